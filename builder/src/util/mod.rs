//! What every stage uses: artifacts written under temporary names and removed on failure or
//! Ctrl-C ([`partial`]), host tools ([`host`]), [`progress`], sizes ([`size`]), identifiers
//! derived from a seed for reproducible images ([`ids`]), paths inside a tree that never lead
//! out of it ([`rootpath`]), sparse files ([`sparse`]) and the one SHA-256 of files ([`hash`]).

pub mod hash;
pub mod host;
pub mod ids;
pub mod partial;
pub mod progress;
pub mod rootpath;
pub mod size;
pub mod sparse;
