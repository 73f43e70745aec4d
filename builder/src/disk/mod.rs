//! A root tree to a partitioned, bootable raw disk: [`assemble`] step by step, the root tree
//! it reads ([`tree`]), and the disk's parts: the partition table ([`gpt`]), the root file
//! system ([`ext4`]), the ESP ([`fat`]) and GRUB ([`grub`]); the tree's packages ([`manifest`]).

pub mod assemble;
pub mod ext4;
pub mod fat;
pub mod gpt;
pub mod grub;
pub mod manifest;
pub mod tree;
