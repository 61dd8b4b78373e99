//! The three checksums the on-disk formats use: CRC-32 (GPT), CRC-32C
//! (ext4 `metadata_csum`, jbd2) and CRC-16 (ext4 `gdt_csum`). Table-driven,
//! tables built at compile time.

const fn table32(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

const fn table16(poly: u16) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u16;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32: [u32; 256] = table32(0xEDB8_8320);
static CRC32C: [u32; 256] = table32(0x82F6_3B78);
static CRC16: [u16; 256] = table16(0xA001);

fn update32(table: &[u32; 256], mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// The usual CRC-32 (zlib, GPT): init and final xor `!0`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !update32(&CRC32, !0, data)
}

/// Raw CRC-32C update with no inversions, as the kernel's `crc32c(seed, …)`
/// that ext4 and jbd2 use (`ext4_chksum`).
pub(crate) fn crc32c_raw(crc: u32, data: &[u8]) -> u32 {
    update32(&CRC32C, crc, data)
}

/// Raw CRC-16 (ANSI, reflected) update with no inversions, as the kernel's
/// `crc16(seed, …)` that `gdt_csum` uses.
pub(crate) fn crc16_raw(mut crc: u16, data: &[u8]) -> u16 {
    for &b in data {
        crc = CRC16[((crc ^ u16::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // CRC-16/ARC.
        assert_eq!(crc16_raw(0, b"123456789"), 0xBB3D);
    }
}
