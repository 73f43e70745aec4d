//! SHA-256 of files, the one hash of inputs, caches and artifacts.

use crate::util::sparse;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::Path;

/// The file's SHA-256. Holes are hashed from a buffer of zeros instead of being read, which
/// matters for sparse disk images that are mostly holes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let zeros = vec![0u8; 4 << 20];
    let feed_zeros = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64);
            h.update(&zeros[..k as usize]);
            n -= k;
        }
    };
    let reading = || format!("reading {}", path.display());
    let mut pos = 0u64;
    for r in sparse::data_extents(&f, len).with_context(reading)? {
        feed_zeros(&mut h, r.start - pos);
        let mut at = r.start;
        while at < r.end {
            let want = ((r.end - at) as usize).min(buf.len());
            let n = sparse::read_full_at(&f, &mut buf[..want], at).with_context(reading)?;
            buf[n..want].fill(0);
            h.update(&buf[..want]);
            at += want as u64;
        }
        pos = r.end;
    }
    feed_zeros(&mut h, len - pos);
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = sha256_file(&dir.path().join("none")).unwrap_err();
        assert!(format!("{err:#}").starts_with(&format!(
            "opening {}: No such file",
            dir.path().join("none").display()
        )));
    }

    #[test]
    fn sparse_files_hash_like_their_content() {
        // Data, a hole, data, a trailing hole.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        let f = File::create(&p).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 9 << 20).unwrap();
        f.set_len(12 << 20).unwrap();
        let mut content = vec![0u8; 12 << 20];
        content[..4].copy_from_slice(b"head");
        content[9 << 20..(9 << 20) + 4].copy_from_slice(b"tail");
        assert_eq!(
            sha256_file(&p).unwrap(),
            hex::encode(Sha256::digest(&content))
        );
    }
}
