//! The test frame shared by `pv-example-wayland-client` (which draws it) and
//! `pv-example-wayland-server` (which checksums what was committed), so a
//! test can compare both ends' output.

/// Frame size in pixels (ARGB8888, 4 bytes each).
pub const WIDTH: u32 = 64;
pub const HEIGHT: u32 = 48;

/// The known pattern: every pixel depends on its position.
pub fn draw() -> Vec<u8> {
    let mut px = Vec::with_capacity((WIDTH * HEIGHT * 4) as usize);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let argb: u32 = 0xff00_0000 | (x * 4) << 16 | (y * 5) << 8 | ((x ^ y) & 0xff);
            px.extend_from_slice(&argb.to_le_bytes());
        }
    }
    px
}

/// FNV-1a (64 bit) over the visible bytes of each row (stride padding
/// excluded), printed as 16 hex digits.
pub fn checksum<'a>(rows: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for row in rows {
        for b in row {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_covers_rows_only() {
        let px = super::draw();
        let row = (super::WIDTH * 4) as usize;
        let whole = super::checksum(px.chunks(row));
        let mut padded = Vec::new();
        for r in px.chunks(row) {
            padded.extend_from_slice(r);
            padded.extend_from_slice(&[9, 9, 9, 9]);
        }
        let again = super::checksum(padded.chunks(row + 4).map(|r| &r[..row]));
        assert_eq!(whole, again);
    }
}
