//! Partition tables and ext2/3/4 metadata: the input is a disk; finding the
//! guest's package databases gives them or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use patchline_scan::ReadAt;

struct Disk<'a>(&'a [u8]);

impl ReadAt for Disk<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let end = start.checked_add(buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let src = self.0.get(start..end).ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let disk = Disk(data);
    let _ = patchline_scan::fs::read_partitions(&disk);
    let _ = patchline_scan::fs::read_guest(&disk);
});
