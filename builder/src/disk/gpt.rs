//! The disk: a GPT laid out like Ubuntu's cloud images, so tools and habits that know those
//! (growpart grows partition 1; grub-install finds the BIOS boot partition) work unchanged.
//!
//! | # | start (sector) | size | type |
//! |---|---|---|---|
//! | 14 | 2048 | 4 MiB | BIOS boot (GRUB's core.img) |
//! | 15 | 10240 | 106 MiB | EFI system partition, FAT32 `UEFI` |
//! | 1 | 227328 | to the last usable sector | Linux file system, ext4 `cloudimg-rootfs` |
//!
//! The partition table is written with the `gpt` crate, with GUIDs from the image's seed.

use crate::util::ids::IdSeed;
use crate::util::size::{human, MIB};
use anyhow::{bail, Context, Result};
use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use gpt::partition_types;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

pub const SECTOR: u64 = 512;
pub const BIOS_BOOT_PART: u32 = 14;
pub const ESP_PART: u32 = 15;
pub const ROOT_PART: u32 = 1;
const BIOS_BOOT_START: u64 = 2048;
const BIOS_BOOT_SECTORS: u64 = 4 * MIB / SECTOR;
const ESP_SECTORS: u64 = 106 * MIB / SECTOR;
/// The backup GPT: 32 sectors of entries and the header in the last sector.
const BACKUP_SECTORS: u64 = 33;

/// Sector ranges (inclusive) of the three partitions of a disk of `size` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskLayout {
    pub size: u64,
    pub bios_boot: (u64, u64),
    pub esp: (u64, u64),
    pub root: (u64, u64),
}

impl DiskLayout {
    /// The smallest disk that can hold the layout at all (a 1 MiB root partition).
    pub const MIN_SIZE: u64 = 112 * MIB + BACKUP_SECTORS * SECTOR + MIB;

    pub fn new(size: u64) -> Result<Self> {
        if !size.is_multiple_of(MIB) {
            bail!("the disk size {size} is not a whole number of MiB");
        }
        if size < Self::MIN_SIZE {
            bail!(
                "a disk of {} is too small for the partition layout",
                human(size)
            );
        }
        let sectors = size / SECTOR;
        let bios_boot = (BIOS_BOOT_START, BIOS_BOOT_START + BIOS_BOOT_SECTORS - 1);
        let esp = (bios_boot.1 + 1, bios_boot.1 + ESP_SECTORS);
        let root = (esp.1 + 1, sectors - BACKUP_SECTORS - 1);
        Ok(DiskLayout {
            size,
            bios_boot,
            esp,
            root,
        })
    }

    pub fn bytes(range: (u64, u64)) -> (u64, u64) {
        (range.0 * SECTOR, (range.1 - range.0 + 1) * SECTOR)
    }

    /// Offset and length in bytes of the root partition.
    pub fn root_bytes(&self) -> (u64, u64) {
        Self::bytes(self.root)
    }

    pub fn esp_bytes(&self) -> (u64, u64) {
        Self::bytes(self.esp)
    }

    pub fn bios_boot_bytes(&self) -> (u64, u64) {
        Self::bytes(self.bios_boot)
    }

    /// Bytes of the disk before the root partition plus the backup GPT after it.
    pub fn overhead() -> u64 {
        (BIOS_BOOT_START + BIOS_BOOT_SECTORS + ESP_SECTORS + BACKUP_SECTORS) * SECTOR
    }
}

/// Writes the protective MBR (with `bootcode` in its first 440 bytes) and both GPT headers and
/// entry arrays.
pub fn write_partition_table(
    disk: &File,
    layout: &DiskLayout,
    ids: &IdSeed,
    bootcode: Option<[u8; 440]>,
) -> Result<()> {
    let part = |first_last: (u64, u64), kind: partition_types::Type, purpose: &str, name: &str| {
        Partition {
            part_type_guid: kind,
            part_guid: ids.uuid(purpose),
            first_lba: first_last.0,
            last_lba: first_last.1,
            flags: 0,
            name: name.to_string(),
        }
    };
    let mut parts = BTreeMap::new();
    parts.insert(
        ROOT_PART,
        part(
            layout.root,
            partition_types::LINUX_FS,
            "gpt-root",
            "cloudimg-rootfs",
        ),
    );
    parts.insert(
        BIOS_BOOT_PART,
        part(
            layout.bios_boot,
            partition_types::BIOS,
            "gpt-bios",
            "BIOS boot",
        ),
    );
    parts.insert(
        ESP_PART,
        part(layout.esp, partition_types::EFI, "gpt-esp", "EFI system"),
    );

    let gdisk = {
        let mut g = gpt::GptConfig::new()
            .writable(true)
            .logical_block_size(LogicalBlockSize::Lb512)
            .create_from_device(disk, Some(ids.uuid("gpt-disk")))
            .context("creating the GPT")?;
        g.update_partitions(parts.clone())
            .context("setting the GPT partitions")?;
        g
    };
    // GptDisk::write packs used entries at the front of the array, which would renumber
    // 14 and 15 as 2 and 3. So the crate builds the headers, each entry is written at its own
    // index, and the headers (whose CRCs cover the array as it is on disk) are written last.
    let mut primary = gdisk
        .primary_header()
        .context("building the primary GPT header")?
        .clone();
    let mut backup = gdisk
        .backup_header()
        .context("building the backup GPT header")?
        .clone();
    let mut dev = disk;
    for header in [&primary, &backup] {
        let array = vec![0u8; header.num_parts as usize * header.part_size as usize];
        dev.write_all_at(&array, header.part_start * SECTOR)
            .context("clearing the GPT entry array")?;
        for (number, part) in &parts {
            part.write_to_device(
                &mut dev,
                u64::from(number - 1),
                header.part_start,
                LogicalBlockSize::Lb512,
                header.part_size,
            )
            .with_context(|| format!("writing GPT entry {number}"))?;
        }
    }
    backup
        .write_backup(&mut dev, LogicalBlockSize::Lb512)
        .context("writing the backup GPT header")?;
    primary
        .write_primary(&mut dev, LogicalBlockSize::Lb512)
        .context("writing the primary GPT header")?;

    let mut mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(layout.size / SECTOR - 1).unwrap_or(u32::MAX),
    );
    if let Some(code) = bootcode {
        mbr.set_bootcode(code);
    }
    mbr.overwrite_lba0(&mut dev)
        .context("writing the protective MBR")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::size::GIB;

    #[test]
    fn layout_matches_ubuntu_cloud_images() {
        // Ubuntu's 2.2 GiB jammy image: p1 227328..4612062, p14 2048..10239, p15 10240..227327.
        let l = DiskLayout::new(2252 * MIB).unwrap();
        assert_eq!(l.bios_boot, (2048, 10239));
        assert_eq!(l.esp, (10240, 227327));
        assert_eq!(l.root, (227328, 4612062));
        let l = DiskLayout::new(10 * GIB).unwrap();
        assert_eq!(l.root_bytes().0, 227328 * 512);
        assert_eq!(l.root_bytes().0 + l.root_bytes().1, 10 * GIB - 33 * 512);
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            DiskLayout::new(100 * MIB).unwrap_err().to_string(),
            "a disk of 100 MiB is too small for the partition layout"
        );
        assert_eq!(
            DiskLayout::new(GIB + 512).unwrap_err().to_string(),
            "the disk size 1073742336 is not a whole number of MiB"
        );
    }
}
