//! Identifiers derived from a seed.
//!
//! A disk image carries many identifiers: the GPT disk GUID, one GUID per partition, the root
//! file system UUID and directory hash seed, the FAT volume id, the VHD unique id. Deriving them
//! all from one seed (SHA-256 of the seed and a purpose label) makes two builds from the same
//! inputs bit-identical, while different seeds still give unrelated ids.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The seed every identifier of one image is derived from.
#[derive(Clone, Debug)]
pub struct IdSeed([u8; 32]);

impl IdSeed {
    /// A seed from free text (`--seed`, or the image name and `SOURCE_DATE_EPOCH`).
    pub fn from_text(text: &str) -> Self {
        IdSeed(Sha256::digest(text.as_bytes()).into())
    }

    /// A fresh random seed, for builds that are not meant to be reproducible.
    pub fn random() -> Self {
        IdSeed(rand::random())
    }

    fn bytes(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(purpose.as_bytes());
        h.finalize().into()
    }

    /// A random-looking (version 4) UUID for `purpose`.
    pub fn uuid(&self, purpose: &str) -> Uuid {
        let b = self.bytes(purpose);
        uuid::Builder::from_random_bytes(b[..16].try_into().expect("16 bytes")).into_uuid()
    }

    /// A 32-bit id for `purpose` (FAT volume id).
    pub fn u32(&self, purpose: &str) -> u32 {
        let b = self.bytes(purpose);
        u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_purposes_differ() {
        let a = IdSeed::from_text("x");
        let b = IdSeed::from_text("x");
        assert_eq!(a.uuid("disk"), b.uuid("disk"));
        assert_ne!(a.uuid("disk"), a.uuid("root"));
        assert_ne!(a.uuid("disk"), IdSeed::from_text("y").uuid("disk"));
        assert_eq!(a.uuid("disk").get_version_num(), 4);
        assert_ne!(IdSeed::random().uuid("d"), IdSeed::random().uuid("d"));
    }
}
