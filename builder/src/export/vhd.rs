//! Fixed VHD (the format Azure requires): the raw disk followed by a 512-byte footer.
//!
//! A fixed VHD is the disk's bytes as they are, then a footer described by Microsoft's "Virtual
//! Hard Disk Image Format Specification" (all integers big-endian):
//!
//! | offset | size | field                | value written here                          |
//! |-------:|-----:|----------------------|---------------------------------------------|
//! | 0      | 8    | cookie               | `conectix`                                  |
//! | 8      | 4    | features             | 2 (the "reserved" bit the spec says to set) |
//! | 12     | 4    | file format version  | 0x00010000                                  |
//! | 16     | 8    | data offset          | all ones (no dynamic header: fixed disk)    |
//! | 24     | 4    | time stamp           | seconds since 2000-01-01 00:00:00 UTC       |
//! | 28     | 4    | creator application  | `apbl` (this appliance builder)             |
//! | 32     | 4    | creator version      | crate major << 16 \| minor                  |
//! | 36     | 4    | creator host OS      | `Wi2k` (see below)                          |
//! | 40     | 8    | original size        | the virtual size                            |
//! | 48     | 8    | current size         | the virtual size                            |
//! | 56     | 4    | disk geometry        | cylinders (u16), heads (u8), sectors (u8)   |
//! | 60     | 4    | disk type            | 2 = fixed                                   |
//! | 64     | 4    | checksum             | one's complement of the byte sum of the footer without this field |
//! | 68     | 16   | unique id            | given by the caller                         |
//! | 84     | 1    | saved state          | 0                                           |
//! | 85     | 427  | reserved             | zeros                                       |
//!
//! Decisions:
//!
//! - Azure requires the virtual size to be a whole number of MiB, so the disk is padded with a
//!   hole up to the next MiB before the footer.
//! - The CHS geometry follows the spec's algorithm; it usually describes a little less than the
//!   virtual size, which is why readers may prefer the current size field.
//! - Which of the two qemu believes depends on the creator application: QEMU 10 (block/vpc.c,
//!   `vpc_ignore_current_size`) uses the CHS geometry only for `vpc ` (Virtual PC) and `qemu`
//!   (old QEMU) and the current size for anything else, as Hyper-V and Azure do. So an honest,
//!   own creator code, `apbl`, gets the exact size. (QEMU before 10 used current size only for a
//!   list of known producers such as `win ` and `qem2`; claiming to be one of them would make
//!   those versions agree too, but we do not pretend to be another product for that.)
//! - The spec defines only two host OS codes, `Wi2k` and `Mac `. Readers do not act on the field;
//!   we write `Wi2k`, as qemu and other non-Windows producers do, rather than an undefined code.
//! - The data is copied with [`crate::util::sparse::copy_sparse`], so holes of the raw disk stay holes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};

use crate::util::sparse;

/// Size of the footer.
pub const FOOTER_SIZE: usize = 512;
/// Disk type of a fixed VHD.
pub const DISK_TYPE_FIXED: u32 = 2;
/// 2000-01-01 00:00:00 UTC, the VHD time origin, in Unix seconds.
pub const VHD_EPOCH_UNIX: u64 = 946_684_800;

const COOKIE: [u8; 8] = *b"conectix";
/// Bit 1 ("reserved") must always be set, says the spec.
const FEATURES: u32 = 2;
const FORMAT_VERSION: u32 = 0x0001_0000;
/// No dynamic-disk header follows: the data offset is all ones for fixed disks.
const NO_DATA_OFFSET: u64 = u64::MAX;
/// Our own creator application code ("appliance builder"); see the module comment.
const CREATOR_APP: [u8; 4] = *b"apbl";
const HOST_OS_WINDOWS: [u8; 4] = *b"Wi2k";
const MIB: u64 = 1 << 20;
/// The largest number of sectors the CHS geometry can express (65535 × 16 × 255).
const MAX_CHS_SECTORS: u64 = 65535 * 16 * 255;

/// A decoded VHD footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VhdFooter {
    pub cookie: [u8; 8],
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    /// Seconds since 2000-01-01 00:00:00 UTC.
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_host_os: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    /// Cylinders, heads, sectors per track.
    pub geometry: (u16, u8, u8),
    pub disk_type: u32,
    /// As stored; [`VhdFooter::to_bytes`] computes it afresh.
    pub checksum: u32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
}

impl VhdFooter {
    /// The footer of a fixed disk of `size` bytes written by this crate.
    pub fn fixed(size: u64, timestamp: u32, unique_id: [u8; 16]) -> VhdFooter {
        VhdFooter {
            cookie: COOKIE,
            features: FEATURES,
            format_version: FORMAT_VERSION,
            data_offset: NO_DATA_OFFSET,
            timestamp,
            creator_app: CREATOR_APP,
            creator_version: creator_version(),
            creator_host_os: HOST_OS_WINDOWS,
            original_size: size,
            current_size: size,
            geometry: chs_geometry(size),
            disk_type: DISK_TYPE_FIXED,
            checksum: 0,
            unique_id,
            saved_state: 0,
        }
    }

    /// Decodes a footer, checking its cookie and checksum.
    pub fn parse(bytes: &[u8; FOOTER_SIZE]) -> Result<VhdFooter> {
        let b = &bytes[..];
        ensure!(
            b[0..8] == COOKIE,
            "not a VHD footer: cookie is {:?}",
            String::from_utf8_lossy(&b[0..8])
        );
        let stored = be32(b, 64);
        let computed = checksum(bytes);
        ensure!(
            stored == computed,
            "VHD footer checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        );
        Ok(VhdFooter {
            cookie: COOKIE,
            features: be32(b, 8),
            format_version: be32(b, 12),
            data_offset: be64(b, 16),
            timestamp: be32(b, 24),
            creator_app: b[28..32].try_into().expect("4 bytes"),
            creator_version: be32(b, 32),
            creator_host_os: b[36..40].try_into().expect("4 bytes"),
            original_size: be64(b, 40),
            current_size: be64(b, 48),
            geometry: (u16::from_be_bytes([b[56], b[57]]), b[58], b[59]),
            disk_type: be32(b, 60),
            checksum: stored,
            unique_id: b[68..84].try_into().expect("16 bytes"),
            saved_state: b[84],
        })
    }

    /// Encodes the footer, with a freshly computed checksum.
    pub fn to_bytes(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        b[0..8].copy_from_slice(&self.cookie);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.format_version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_host_os);
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.geometry.0.to_be_bytes());
        b[58] = self.geometry.1;
        b[59] = self.geometry.2;
        b[60..64].copy_from_slice(&self.disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        b[84] = self.saved_state;
        let sum = checksum(&b);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One's complement of the sum of all footer bytes, the checksum field counted as zeros.
fn checksum(footer: &[u8; FOOTER_SIZE]) -> u32 {
    let sum = footer
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, &b)| acc.wrapping_add(u32::from(b)));
    !sum
}

/// The crate version as `major << 16 | minor`, the usual encoding of the creator version.
fn creator_version() -> u32 {
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major.min(0xffff) << 16) | minor.min(0xffff)
}

/// CHS geometry (cylinders, heads, sectors per track) of a disk of `size` bytes, computed with
/// the algorithm of the VHD specification (appendix "CHS Calculation").
pub fn chs_geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / 512).min(MAX_CHS_SECTORS);
    let (sectors, heads, cyl_times_heads) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut sectors = 17;
        let mut cth = total / sectors;
        let mut heads = cth.div_ceil(1024).max(4);
        if cth >= heads * 1024 || heads > 16 {
            sectors = 31;
            heads = 16;
            cth = total / sectors;
        }
        if cth >= heads * 1024 {
            sectors = 63;
            heads = 16;
            cth = total / sectors;
        }
        (sectors, heads, cth)
    };
    // The clamp above keeps cylinders within 65535 and heads/sectors within a byte.
    ((cyl_times_heads / heads) as u16, heads as u8, sectors as u8)
}

/// Writes `raw` (a disk image of `disk_size` bytes) to `out` as a fixed VHD.
///
/// The virtual size is `disk_size` rounded up to a whole MiB (the padding is a hole); the file
/// is that long plus the 512-byte footer. `timestamp_unix` (clamped to 2000-01-01 at the
/// earliest, the format's origin) and `unique_id` go into the footer. `progress` receives the
/// bytes of the disk processed so far, of `disk_size`.
pub fn write_fixed_vhd(
    raw: &Path,
    disk_size: u64,
    out: &File,
    timestamp_unix: u64,
    unique_id: [u8; 16],
    progress: &dyn Fn(u64),
) -> Result<()> {
    ensure!(disk_size > 0, "VHD: the disk size is zero");
    let virtual_size = disk_size.div_ceil(MIB) * MIB;
    // Times before the VHD origin cannot be expressed; the origin itself is the closest value.
    let timestamp = u32::try_from(timestamp_unix.saturating_sub(VHD_EPOCH_UNIX))
        .with_context(|| format!("VHD timestamp {timestamp_unix} is past 2136"))?;

    let (src, _) = sparse::open_raw(raw, disk_size)?;

    sparse::copy_sparse(&src, out, disk_size, progress)
        .with_context(|| format!("copying {} into the VHD", raw.display()))?;
    out.set_len(virtual_size)
        .context("padding the VHD to a whole MiB")?;
    let footer = VhdFooter::fixed(virtual_size, timestamp, unique_id).to_bytes();
    out.write_all_at(&footer, virtual_size)
        .context("writing the VHD footer")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    const ID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ];

    #[test]
    fn footer_round_trip() {
        let footer = VhdFooter::fixed(6 * MIB, 0x2c0f_1e00, ID);
        let bytes = footer.to_bytes();
        let parsed = VhdFooter::parse(&bytes).unwrap();
        assert_eq!(parsed.to_bytes(), bytes);
        assert_eq!(&bytes[0..8], b"conectix");
        assert_eq!(parsed.disk_type, DISK_TYPE_FIXED);
        assert_eq!(parsed.current_size, 6 * MIB);
        assert_eq!(parsed.original_size, 6 * MIB);
        assert_eq!(parsed.geometry, (180, 4, 17));
        assert_eq!(parsed.timestamp, 0x2c0f_1e00);
        assert_eq!(parsed.unique_id, ID);
        assert_eq!(parsed.data_offset, u64::MAX);
        assert_eq!(parsed.features, 2);
        assert_eq!(parsed.format_version, 0x0001_0000);
        // Big-endian layout at the spec's offsets.
        assert_eq!(&bytes[48..56], &(6 * MIB).to_be_bytes());
        assert_eq!(&bytes[56..60], &[0, 180, 4, 17]);
        assert_eq!(&bytes[60..64], &[0, 0, 0, 2]);
        assert_eq!(&bytes[68..84], &ID);
        assert!(bytes[85..].iter().all(|&b| b == 0));
    }

    #[test]
    fn checksum_is_verified() {
        let bytes = VhdFooter::fixed(6 * MIB, 1, ID).to_bytes();
        // The spec's definition, computed independently: !sum(bytes except checksum).
        let sum: u32 = bytes[..64]
            .iter()
            .chain(&bytes[68..])
            .map(|&b| u32::from(b))
            .sum();
        assert_eq!(u32::from_be_bytes(bytes[64..68].try_into().unwrap()), !sum);
        for at in [8, 40, 63, 64, 67, 84, 300, 511] {
            let mut bad = bytes;
            bad[at] ^= 0x01;
            assert!(VhdFooter::parse(&bad).is_err(), "flip at {at} not detected");
        }
        let mut bad_cookie = bytes;
        bad_cookie[0] = b'C';
        assert!(VhdFooter::parse(&bad_cookie).is_err());
    }

    #[test]
    fn chs_matches_the_spec_algorithm() {
        // Each branch of the algorithm: 17 sectors with 4 heads, 31 and 63 sectors with 16
        // heads, 255 sectors, and the clamp at the maximum geometry.
        assert_eq!(chs_geometry(6 * MIB), (180, 4, 17));
        assert_eq!(chs_geometry(20 * MIB), (602, 4, 17));
        assert_eq!(chs_geometry(100 * MIB), (1003, 12, 17));
        assert_eq!(chs_geometry(200 * MIB), (825, 16, 31));
        assert_eq!(chs_geometry(1 << 30), (2080, 16, 63));
        assert_eq!(chs_geometry(30 << 30), (62415, 16, 63));
        assert_eq!(chs_geometry(127 << 30), (65278, 16, 255));
        assert_eq!(chs_geometry(2 << 40), (65535, 16, 255));
    }

    /// `qemu-img compare` of a raw image and a VHD; fails the test unless identical.
    fn compare(raw: &Path, vhd: &Path) {
        let out = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "vpc"])
            .arg(raw)
            .arg(vhd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "qemu-img compare: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn qemu_reads_the_written_vhd() {
        let dir = tempfile::tempdir().unwrap();
        let size = 5 * MIB + 100 * 1024;
        let raw = dir.path().join("disk.raw");
        let file = File::create(&raw).unwrap();
        file.set_len(size).unwrap();
        file.write_all_at(&[0x5a; 4096], 0).unwrap();
        file.write_all_at(b"middle of the disk", 2 * MIB + 17)
            .unwrap();
        file.write_all_at(&[0xa5; 1000], size - 1000).unwrap();
        drop(file);

        let vhd = dir.path().join("disk.vhd");
        let out = File::create(&vhd).unwrap();
        let t = VHD_EPOCH_UNIX + 86_400;
        write_fixed_vhd(&raw, size, &out, t, ID, &|_| {}).unwrap();
        drop(out);

        let meta = std::fs::metadata(&vhd).unwrap();
        assert_eq!(meta.len(), 6 * MIB + 512);
        assert!(meta.blocks() * 512 < 2 * MIB, "VHD not sparse");
        let mut tail = [0u8; FOOTER_SIZE];
        File::open(&vhd)
            .unwrap()
            .read_exact_at(&mut tail, 6 * MIB)
            .unwrap();
        let footer = VhdFooter::parse(&tail).unwrap();
        assert_eq!(footer.current_size, 6 * MIB);
        assert_eq!(footer.timestamp, 86_400);
        assert_eq!(footer.disk_type, DISK_TYPE_FIXED);

        let info = Command::new("qemu-img")
            .args(["info", "--output=json", "-f", "vpc"])
            .arg(&vhd)
            .output()
            .unwrap();
        assert!(
            info.status.success(),
            "{}",
            String::from_utf8_lossy(&info.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["virtual-size"], 6 * MIB, "{info}");

        // Non-strict compare: the VHD's extra (padding) area must read as zeros.
        compare(&raw, &vhd);
        // And against the raw padded to the virtual size, so sizes match too. (Not with -s:
        // strict mode also compares allocation status, which differs between a sparse raw
        // and a fixed VHD even when qemu writes the VHD itself.)
        File::options()
            .write(true)
            .open(&raw)
            .unwrap()
            .set_len(6 * MIB)
            .unwrap();
        compare(&raw, &vhd);
    }
}
