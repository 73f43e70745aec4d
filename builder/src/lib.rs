//! Builds bootable cloud appliance images.
//!
//! The library holds one module per pipeline stage and one per on-disk format; `main.rs` only
//! parses the command line and calls into it. The stages today:
//!
//! - [`build`]: a profile ([`profile`]) to images: the base ([`base`], [`download`]), overlays
//!   ([`overlay`]), provisioning in a chroot ([`provision`]), [`scrub`] and audit, a [`cache`] of
//!   the provisioned tree, then assembly, the package [`manifest`] and the build info. Its inputs
//!   come from the network through [`mirror`]s, or from a bundle ([`bundle`], made by
//!   [`fetch`]); [`inputs`] says which, for the stages and the chroot.
//! - [`tree`]: the root tree to put on the disk (a directory, or a tarball unpacked for the run),
//!   and what it holds that assembly needs (kernels, GRUB platforms, shim).
//! - [`assemble`]: a root tree to a partitioned, bootable raw disk ([`disk`], [`ext4`], [`fat`],
//!   [`grub`]), then every export requested ([`export`]).
//!
//! Cross-cutting: [`ids`] (identifiers derived from a seed, for reproducible images),
//! [`partial`] (artifacts written under temporary names and removed on failure or Ctrl-C),
//! [`host`] (host tools and how to install them), [`progress`], [`size`], [`sparse`], [`hash`],
//! [`rootpath`] (paths inside a tree, never leading out of it), [`toml_util`] (TOML files read
//! with one-line errors), [`sandbox`] (the namespace runner of every build step). [`seed`] and
//! [`qemu`] make NoCloud seeds and boot images for testing.

pub mod assemble;
pub mod base;
pub mod build;
pub mod bundle;
pub mod cache;
pub mod disk;
pub mod download;
pub mod export;
pub mod ext4;
pub mod fat;
pub mod fetch;
pub mod grub;
pub mod hash;
pub mod host;
pub mod ids;
pub mod inputs;
pub mod manifest;
pub mod mirror;
pub mod overlay;
pub mod partial;
pub mod profile;
pub mod progress;
pub mod provision;
pub mod qemu;
pub mod rootpath;
pub mod sandbox;
pub mod scrub;
pub mod seed;
pub mod size;
pub mod sparse;
pub mod toml_util;
pub mod tree;
