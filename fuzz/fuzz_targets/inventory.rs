//! Every inventory format (CycloneDX JSON/XML, SPDX, dpkg status, apk
//! installed, purl lists), detected or forced, and purls themselves.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchline_formats::inventory::{Format, Hint, detect, parse};

fuzz_target!(|data: &[u8]| {
    let hint = Hint { distro: Some("debian-12".into()) };
    if let Some(f) = detect(data) {
        let _ = parse(f, data, &hint);
    }
    for f in Format::ALL {
        let _ = parse(f, data, &hint);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<patchline_formats::purl::Purl>();
    }
});
