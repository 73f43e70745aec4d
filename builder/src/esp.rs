//! The EFI system partition: FAT32 labelled `UEFI`, written with the `fatfs` crate straight
//! into the disk image (the host needs neither a vfat driver nor mtools). Timestamps come from
//! the build's clock (SOURCE_DATE_EPOCH when set) and the volume id from the image's seed, so
//! the partition is reproducible.

use anyhow::{Context, Result};
use fatfs::{Date, DateTime, FatType, FormatVolumeOptions, FsOptions, Time, TimeProvider};
use fscommon::{BufStream, StreamSlice};
use std::fs::File;
use std::io::Write;

/// A file to put on the ESP: path with `/` separators (`EFI/BOOT/BOOTX64.EFI`) and content.
#[derive(Clone, Debug)]
pub struct EspFile {
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

/// Formats the `len` bytes at `offset` of `disk` as FAT32 and writes `files` into it.
pub fn write_esp(
    disk: &File,
    offset: u64,
    len: u64,
    volume_id: u32,
    unix_time: u64,
    files: &[EspFile],
) -> Result<()> {
    let slice = StreamSlice::new(disk, offset, offset + len).context("opening the ESP region")?;
    let mut stream = BufStream::new(slice);
    fatfs::format_volume(
        &mut stream,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .volume_id(volume_id)
            .volume_label(*b"UEFI       "),
    )
    .context("formatting the ESP as FAT32")?;
    // fatfs wants a 'static time provider; one small leak per image is fine.
    let clock: &'static FixedTime = Box::leak(Box::new(FixedTime(fat_time(unix_time))));
    let fs = fatfs::FileSystem::new(
        &mut stream,
        FsOptions::new()
            .time_provider(clock)
            .update_accessed_date(false),
    )
    .context("opening the new ESP")?;
    for f in files {
        let root = fs.root_dir();
        let (dirs, name) = f.path.rsplit_once('/').unwrap_or(("", &f.path));
        let mut dir = root;
        for part in dirs.split('/').filter(|p| !p.is_empty()) {
            dir = dir
                .create_dir(part)
                .with_context(|| format!("creating ESP directory {part} for {}", f.path))?;
        }
        let mut file = dir
            .create_file(name)
            .with_context(|| format!("creating {} on the ESP", f.path))?;
        file.truncate().context("truncating")?;
        file.write_all(&f.contents)
            .with_context(|| format!("writing {} to the ESP (is the ESP too small?)", f.path))?;
        file.flush()?;
    }
    fs.unmount().context("closing the ESP")?;
    stream.flush().context("flushing the ESP")?;
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
    fn volume_id_format() {
        assert_eq!(volume_id_text(0x1234abcd), "1234-ABCD");
    }
}
