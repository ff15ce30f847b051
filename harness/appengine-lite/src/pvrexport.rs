//! A minimal pvrexport writer for tests: `json` plus `objects/<sha256>`,
//! file entries only (upstream's pvtx crashes on directory entries).

use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a gzipped pvrexport. `objects` are `(name, content)`; the name is
/// normally the content's sha256 (tests pass a wrong one on purpose).
pub fn write(
    path: &Path,
    json: &serde_json::Value,
    objects: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let file = std::fs::File::create(path)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    add("json", &serde_json::to_vec(json)?)?;
    for (name, data) in objects {
        add(&format!("objects/{name}"), data)?;
    }
    let gz = tar.into_inner()?;
    gz.finish()?.flush()
}
