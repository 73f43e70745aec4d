//! Builds bootable cloud appliance images.
//!
//! The library holds one module per pipeline stage and one per on-disk format; `main.rs` only
//! parses the command line and calls into it. The stages today:
//!
//! - [`tree`]: the root tree to put on the disk (a directory, or a tarball unpacked for the run),
//!   and what it holds that assembly needs (kernels, GRUB platforms, shim).
//! - [`assemble`]: a root tree to a partitioned, bootable raw disk ([`disk`], [`ext4`], [`fat`],
//!   [`grub`]), then every export requested ([`export`]).
//!
//! Cross-cutting: [`ids`] (identifiers derived from a seed, for reproducible images),
//! [`partial`] (artifacts written under temporary names and removed on failure or Ctrl-C),
//! [`host`] (host tools and how to install them), [`progress`], [`size`], [`sparse`].

pub mod assemble;
pub mod disk;
pub mod export;
pub mod ext4;
pub mod fat;
pub mod grub;
pub mod host;
pub mod ids;
pub mod partial;
pub mod progress;
pub mod qemu;
pub mod seed;
pub mod size;
pub mod sparse;
pub mod tree;
