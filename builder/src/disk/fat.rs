//! FAT volumes written with the `fatfs` crate straight into an image file (the host needs
//! neither a vfat driver nor mtools): the EFI system partition (FAT32, label `UEFI`) and the
//! NoCloud seed (label `CIDATA`). Timestamps come from the build's clock (SOURCE_DATE_EPOCH
//! when set) and the volume id from a seed, so the volumes are reproducible.

use anyhow::{Context, Result};
use fatfs::{Date, DateTime, FatType, FormatVolumeOptions, FsOptions, Time, TimeProvider};
use fscommon::{BufStream, StreamSlice};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// A file to put on a FAT volume: path with `/` separators (`EFI/BOOT/BOOTX64.EFI`) and
/// content.
#[derive(Clone, Debug)]
pub struct FatFile {
    pub path: String,
    pub contents: Vec<u8>,
}

#[derive(Debug)]
struct FixedTime(DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// FAT dates start in 1980 and are local-time-free here: the UTC civil time of `unix`.
fn fat_time(unix: u64) -> DateTime {
    let unix = unix.max(315_532_800); // 1980-01-01
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    DateTime {
        date: Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// What a FAT volume is: its label (11 bytes, space padded), id and FAT type (`None`: the one
/// that suits its size).
#[derive(Clone, Copy, Debug)]
pub struct FatSpec {
    pub label: [u8; 11],
    pub volume_id: u32,
    pub fat_type: Option<FatType>,
}

/// Formats the `len` bytes at `offset` of `disk` as FAT32 labelled `UEFI` and writes `files`.
pub fn write_esp(
    disk: &File,
    offset: u64,
    len: u64,
    volume_id: u32,
    unix_time: u64,
    files: &[FatFile],
) -> Result<()> {
    let spec = FatSpec {
        label: *b"UEFI       ",
        volume_id,
        fat_type: Some(FatType::Fat32),
    };
    write_volume(disk, offset, len, spec, unix_time, files).context("writing the ESP")
}

/// Formats the `len` bytes at `offset` of `disk` as FAT and writes `files` into it.
pub fn write_volume(
    disk: &File,
    offset: u64,
    len: u64,
    spec: FatSpec,
    unix_time: u64,
    files: &[FatFile],
) -> Result<()> {
    let slice =
        StreamSlice::new(disk, offset, offset + len).context("opening the volume's region")?;
    let mut stream = BufStream::new(slice);
    let mut format = FormatVolumeOptions::new()
        .volume_id(spec.volume_id)
        .volume_label(spec.label);
    if let Some(t) = spec.fat_type {
        format = format.fat_type(t);
    }
    fatfs::format_volume(&mut stream, format).context("formatting as FAT")?;
    // fatfs wants a 'static time provider; one small leak per image is fine.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(unix_time))));
    let fs = fatfs::FileSystem::new(
        &mut stream,
        FsOptions::new()
            .time_provider(clock)
            .update_accessed_date(false),
    )
    .context("opening the new FAT volume")?;
    for f in files {
        let root = fs.root_dir();
        let (dirs, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let mut dir = root;
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            dir = dir
                .create_dir(part)
                .with_context(|| format!("creating directory {part} for {}", f.path))?;
        }
        let mut file = dir
            .create_file(name)
            .with_context(|| format!("creating {}", f.path))?;
        file.truncate().context("truncating")?;
        file.write_all(&f.contents)
            .with_context(|| format!("writing {} (is the volume too small?)", f.path))?;
        file.flush()?;
    }
    fs.unmount().context("closing the FAT volume")?;
    stream.flush().context("flushing the FAT volume")?;
    if spec.fat_type == Some(FatType::Fat32) {
        repair_dot_entries(&mut stream).context("repairing the directory entries")?;
    }
    Ok(())
}

/// fatfs 0.3.6 (the newest release) writes every new directory as `LFN(.) . LFN(..) ..` and
/// gives `..` of a top-level directory the root's cluster number. The FAT specification wants
/// `.` and `..` in the first two slots with no long names, and `..` = 0 when the parent is the
/// root; fsck.fat rejects both (rust-fatfs issues #99, #100, #117, fixed upstream after 0.3.6).
/// This walks every directory and rewrites its first slots the way the spec has them. Remove it
/// once a fatfs release carries the fix (the fsck.fat test in this module shows when).
fn repair_dot_entries<S: Read + Write + Seek>(disk: &mut S) -> Result<()> {
    let mut boot = [0u8; 512];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut boot)?;
    let u16_at = |o: usize| u16::from_le_bytes([boot[o], boot[o + 1]]) as u64;
    let u32_at = |o: usize| u32::from_le_bytes(boot[o..o + 4].try_into().expect("4 bytes")) as u64;
    let (sector, per_cluster, reserved, fats) =
        (u16_at(11), boot[13] as u64, u16_at(14), boot[16] as u64);
    let (fat_sectors, root) = (u32_at(36), u32_at(44));
    let cluster_len = sector * per_cluster;
    let data_start = (reserved + fats * fat_sectors) * sector;
    let cluster_offset = |c: u64| data_start + (c - 2) * cluster_len;

    // Directories to visit: (first cluster, parent's first cluster with 0 for the root).
    let mut todo = vec![(root, None::<u64>)];
    while let Some((first, parent)) = todo.pop() {
        // Read the whole directory, following its cluster chain in the first FAT.
        let mut chain = vec![first];
        loop {
            let mut next = [0u8; 4];
            disk.seek(SeekFrom::Start(
                reserved * sector + chain[chain.len() - 1] * 4,
            ))?;
            disk.read_exact(&mut next)?;
            let next = u32::from_le_bytes(next) as u64 & 0x0FFF_FFFF;
            if !(2..0x0FFF_FFF7).contains(&next) || chain.len() > 65536 {
                break;
            }
            chain.push(next);
        }
        let mut entries = vec![0u8; chain.len() * cluster_len as usize];
        for (i, c) in chain.iter().enumerate() {
            disk.seek(SeekFrom::Start(cluster_offset(*c)))?;
            disk.read_exact(
                &mut entries[i * cluster_len as usize..(i + 1) * cluster_len as usize],
            )?;
        }
        let mut slots: Vec<[u8; 32]> = entries
            .chunks(32)
            .map(|e| e.try_into().expect("32 bytes"))
            .collect();
        if let Some(parent) = parent {
            let before = slots.len();
            // Drop long-name entries (attribute 0x0F) that belong to "." or "..".
            let mut i = 0;
            while i < slots.len() && slots[i][0] != 0 {
                let lfn_of_dot = slots[i][11] == 0x0F
                    && slots[i + 1..]
                        .iter()
                        .find(|s| s[11] != 0x0F)
                        .is_some_and(|s| s[..11] == *b".          " || s[..11] == *b"..         ");
                if lfn_of_dot {
                    slots.remove(i);
                } else {
                    i += 1;
                }
            }
            slots.resize(before, [0u8; 32]);
            if slots[0][..11] != *b".          " || slots[1][..11] != *b"..         " {
                anyhow::bail!("directory at cluster {first} does not start with . and ..");
            }
            slots[1][20..22].copy_from_slice(&((parent >> 16) as u16).to_le_bytes());
            slots[1][26..28].copy_from_slice(&(parent as u16).to_le_bytes());
            let fixed: Vec<u8> = slots.iter().flatten().copied().collect();
            for (i, c) in chain.iter().enumerate() {
                disk.seek(SeekFrom::Start(cluster_offset(*c)))?;
                disk.write_all(&fixed[i * cluster_len as usize..(i + 1) * cluster_len as usize])?;
            }
        }
        for slot in slots.iter().take_while(|s| s[0] != 0) {
            let is_subdir =
                slot[0] != 0xE5 && slot[11] != 0x0F && slot[11] & 0x10 != 0 && slot[0] != b'.';
            if is_subdir {
                let child = ((u16::from_le_bytes([slot[20], slot[21]]) as u64) << 16)
                    | u16::from_le_bytes([slot[26], slot[27]]) as u64;
                todo.push((child, Some(if first == root { 0 } else { first })));
            }
        }
    }
    disk.flush()?;
    Ok(())
}

/// The volume id as Linux shows it (`blkid`, `/dev/disk/by-uuid`): `ABCD-1234`.
pub fn volume_id_text(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        let t = fat_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!((t.date.year, t.date.month, t.date.day), (2023, 11, 14));
        assert_eq!((t.time.hour, t.time.min, t.time.sec), (22, 13, 20));
        let t = fat_time(951_782_400); // 2000-02-29
        assert_eq!((t.date.year, t.date.month, t.date.day), (2000, 2, 29));
        assert_eq!(fat_time(0).date.year, 1980);
    }

    #[test]
    fn nested_directories_pass_fsck_fat() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("esp.img");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&img)
            .unwrap();
        let len = 106u64 << 20;
        f.set_len(len + (1 << 20)).unwrap();
        let file = |path: &str, n: usize| FatFile {
            path: path.into(),
            contents: vec![7u8; n],
        };
        let mut files = vec![
            file("EFI/BOOT/BOOTX64.EFI", 300_000),
            file("EFI/BOOT/grub.cfg", 100),
            file("EFI/debian/grub.cfg", 100),
            file("EFI/debian/deeper/x.bin", 10),
        ];
        // Enough entries that a directory spans several clusters.
        files.extend((0..40).map(|i| file(&format!("EFI/many/file-with-a-long-name-{i}.txt"), 1)));
        write_esp(&f, 1 << 20, len, 0x1234_5678, 1_700_000_000, &files).unwrap();
        drop(f);
        let part = dir.path().join("part.img");
        let all = std::fs::read(&img).unwrap();
        std::fs::write(&part, &all[1 << 20..]).unwrap();
        let out = std::process::Command::new("fsck.fat")
            .arg("-n")
            .arg(&part)
            .output()
            .expect("fsck.fat (dosfstools)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let ls = std::process::Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(&part)
            .arg("::/")
            .output()
            .unwrap();
        let ls = String::from_utf8_lossy(&ls.stdout);
        assert!(ls.contains("::/EFI/debian/deeper/x.bin"), "{ls}");
        assert!(
            ls.contains("::/EFI/many/file-with-a-long-name-39.txt"),
            "{ls}"
        );
    }

    #[test]
    fn volume_id_format() {
        assert_eq!(volume_id_text(0x1234abcd), "1234-ABCD");
    }
}
