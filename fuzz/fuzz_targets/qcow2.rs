//! qcow2 headers, tables and clusters: the input is a whole image file;
//! opening it and reading its disk gives data or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchline_scan::ReadAt;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("patchline-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("image.qcow2");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = patchline_scan::header_info(&path);
    if let Ok(image) = patchline_scan::Qcow2Image::open(&path, None) {
        let mut buf = vec![0u8; 4096];
        let size = image.size();
        for offset in [0, size / 2, size.saturating_sub(4096)] {
            let _ = image.read_at(offset, &mut buf);
        }
        let _ = image.check();
    }
});
