//! OSV records, JSON and YAML: any bytes give a record or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = patchline_formats::osv::parse_json(data);
    let _ = patchline_formats::osv::parse_yaml(data);
});
