//! Builds bootable cloud appliance images.
//!
//! The library is laid out as the pipeline runs; `main.rs` only parses the command line and
//! calls into it. Imports point down this list, never up:
//!
//! - [`spec`]: what to build: a profile and its overlays.
//! - [`stages`]: the build, stage by stage: its plan, the base, overlays, provisioning in a
//!   chroot, scrub and audit, the stage cache, the package manifest; and `appliance fetch`.
//! - [`inputs`]: where the stages' inputs come from: the network through [`inputs::mirror`]s,
//!   downloads ([`inputs::download`]), or a bundle ([`inputs::bundle`]).
//! - [`sandbox`]: the namespaces every build step runs in (debootstrap and provisioning).
//! - [`disk`]: a root tree to a partitioned, bootable raw disk; then [`export`] to every
//!   format requested.
//! - [`util`]: what every stage uses (temporary artifacts, progress, sizes, hashes, ...).
//!
//! Beside them: [`seed`] and [`qemu`] make NoCloud seeds and boot images (`appliance seed`,
//! `appliance boot` and the tests).

pub mod disk;
pub mod export;
pub mod inputs;
pub mod qemu;
pub mod sandbox;
pub mod seed;
pub mod spec;
pub mod stages;
pub mod util;
