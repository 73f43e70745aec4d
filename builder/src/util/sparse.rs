//! Sparse-file helpers: finding the data regions of a file and copying only them.
//!
//! Disk images are mostly holes: a 20 GiB raw disk may hold 1 GiB of data. Reading or writing
//! the holes would cost time and, for the copy, disk space, so every export walks the data
//! regions only.
//!
//! - [`data_extents`] asks the filesystem with `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)`. A
//!   filesystem without that support answers `EINVAL`; then the whole length is reported as one
//!   data extent, which is always correct, only slower. `ENXIO` from `SEEK_DATA` is not an error:
//!   it means there is no data at or after the offset.
//! - [`copy_sparse`] copies those extents with positioned I/O and, within them, also skips
//!   64 KiB-aligned blocks that are entirely zero (filesystems often report zeroed-but-allocated
//!   blocks as data), so the destination stays as sparse as possible.
//!
//! Both functions use positioned reads and writes (`FileExt`), so they never depend on the file
//! cursor; `data_extents` does move the cursor of `file` as a side effect of `lseek`.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// Size of the read/write buffer of [`copy_sparse`].
const COPY_BUF: usize = 1 << 20;

/// Granularity at which [`copy_sparse`] looks for all-zero blocks to leave as holes.
pub const ZERO_BLOCK: u64 = 64 << 10;

/// The data regions of `file` within `0..len`, sorted, non-overlapping and clipped to `len`.
///
/// Anything of `0..len` not covered is a hole (reads as zeros), including any part beyond the
/// end of the file. When the filesystem cannot report holes, the result is `[0..len]`.
/// Opens a raw disk image and returns it with its length, which must not exceed `disk_size`
/// (a shorter file reads as zeros to the end).
pub fn open_raw(raw: &std::path::Path, disk_size: u64) -> anyhow::Result<(File, u64)> {
    use anyhow::Context;
    let file = File::open(raw).with_context(|| format!("opening raw disk {}", raw.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading the size of {}", raw.display()))?
        .len();
    if len > disk_size {
        anyhow::bail!(
            "raw disk {} is {len} bytes, more than the disk size {disk_size}",
            raw.display()
        );
    }
    Ok((file, len))
}

pub fn data_extents(file: &File, len: u64) -> io::Result<Vec<Range<u64>>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let fd = file.as_raw_fd();
    let mut extents: Vec<Range<u64>> = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match seek(fd, pos, libc::SEEK_DATA) {
            Ok(off) => off,
            // No data at or after `pos`: the rest is a hole.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            // SEEK_DATA is not supported here: treat everything as data.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && pos == 0 => {
                let whole = 0..len;
                return Ok(vec![whole]);
            }
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        let end = match seek(fd, start, libc::SEEK_HOLE) {
            Ok(off) => off.min(len),
            // The file shrank between the two calls; what is left is no longer data.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) => return Err(e),
        };
        if end <= start {
            // A filesystem must always make progress here; guard against looping forever.
            return Err(io::Error::other(format!(
                "SEEK_HOLE from {start} returned {end}"
            )));
        }
        push_merged(&mut extents, start..end);
        pos = end;
    }
    Ok(extents)
}

/// Appends `r` to a sorted list, merging it with the last range if they touch.
pub fn push_merged(list: &mut Vec<Range<u64>>, r: Range<u64>) {
    if let Some(last) = list.last_mut() {
        if r.start <= last.end {
            last.end = last.end.max(r.end);
            return;
        }
    }
    list.push(r);
}

/// `lseek` returning the new offset, or the OS error.
fn seek(fd: libc::c_int, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    let offset = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: lseek only reads its integer arguments; an invalid fd yields EBADF.
    let r = unsafe { libc::lseek(fd, offset, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// True when every byte of `buf` is zero.
///
/// Works on 8-byte words so the compiler can vectorise the inner loop; this runs over every
/// data byte of a disk image, so it matters.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for chunk in &mut chunks {
        let mut acc = 0u64;
        for word in chunk.chunks_exact(8) {
            acc |= u64::from_ne_bytes(word.try_into().expect("8-byte word"));
        }
        if acc != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// Reads as much of `buf` as the file holds at `offset`; returns the number of bytes read,
/// which is less than `buf.len()` only at end of file.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Copies the first `len` bytes of `src` to `dst`, writing only data: holes of `src` and
/// 64 KiB-aligned all-zero blocks are left as holes in `dst`.
///
/// `dst` is truncated first, so whatever it held before cannot show through the holes; at the
/// end its length is exactly `len`. `progress` is called now and then with the number of bytes
/// of `0..len` processed so far, and finally with `len`.
pub fn copy_sparse(src: &File, dst: &File, len: u64, progress: &dyn Fn(u64)) -> io::Result<()> {
    // Truncating to zero and then extending makes the whole destination one hole, so skipped
    // ranges read back as zeros whatever the file held before.
    dst.set_len(0)?;
    dst.set_len(len)?;
    let mut buf = vec![0u8; COPY_BUF];
    for extent in data_extents(src, len)? {
        let mut pos = extent.start;
        while pos < extent.end {
            // Keep pieces aligned to ZERO_BLOCK (after the first) so zero detection below sees
            // whole aligned blocks.
            let piece_end = (pos - pos % ZERO_BLOCK + COPY_BUF as u64).min(extent.end);
            let want = (piece_end - pos) as usize;
            let got = read_full_at(src, &mut buf[..want], pos)?;
            if got < want {
                // The source is shorter than `len`: the missing tail is zeros, i.e. a hole.
                buf[got..want].fill(0);
            }
            write_nonzero_blocks(dst, &buf[..want], pos)?;
            pos = piece_end;
            progress(pos);
        }
    }
    progress(len);
    Ok(())
}

/// Writes `data` (file contents at `offset`) to `dst`, skipping every block that lies within
/// one 64 KiB-aligned window and is all zeros; consecutive non-zero blocks go out in one write.
fn write_nonzero_blocks(dst: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let mut run: Option<usize> = None; // start (index into data) of the pending write
    let mut i = 0usize;
    while i < data.len() {
        let abs = offset + i as u64;
        let block_end = ((abs - abs % ZERO_BLOCK + ZERO_BLOCK - offset) as usize).min(data.len());
        let zero = is_zero(&data[i..block_end]);
        match (zero, run) {
            (true, Some(start)) => {
                dst.write_all_at(&data[start..i], offset + start as u64)?;
                run = None;
            }
            (false, None) => run = Some(i),
            _ => {}
        }
        i = block_end;
    }
    if let Some(start) = run {
        dst.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const MIB: u64 = 1 << 20;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    /// A 16 MiB file with data at 1 MiB (+100 KiB), 5 MiB + 4 KiB (8 KiB) and an allocated but
    /// all-zero 1 MiB at 10 MiB; the rest is holes.
    fn sample() -> (tempfile::NamedTempFile, Vec<u8>) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut expect = vec![0u8; (16 * MIB) as usize];
        let file = f.as_file();
        file.set_len(16 * MIB).unwrap();
        for (off, data) in [
            (MIB, pattern(100 << 10, 1)),
            (5 * MIB + 4096, pattern(8192, 2)),
            (10 * MIB, vec![0u8; MIB as usize]),
        ] {
            file.write_all_at(&data, off).unwrap();
            expect[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
        file.sync_all().unwrap();
        (f, expect)
    }

    #[test]
    fn extents_find_the_data() {
        let (f, _) = sample();
        let ext = data_extents(f.as_file(), 16 * MIB).unwrap();
        // Filesystems allocate in blocks (4 KiB on ext4), so compare at that granularity.
        let ranges_contain =
            |r: Range<u64>| ext.iter().any(|e| e.start <= r.start && r.end <= e.end);
        assert!(ranges_contain(MIB..MIB + (100 << 10)), "{ext:?}");
        assert!(
            ranges_contain(5 * MIB + 4096..5 * MIB + 4096 + 8192),
            "{ext:?}"
        );
        assert!(ranges_contain(10 * MIB..11 * MIB), "{ext:?}");
        for w in ext.windows(2) {
            assert!(w[0].end < w[1].start, "not sorted/disjoint: {ext:?}");
        }
        if ext.len() > 1 {
            // A hole-aware filesystem: nothing but the written ranges (block-rounded).
            let total: u64 = ext.iter().map(|r| r.end - r.start).sum();
            assert!(total <= 2 * MIB, "{ext:?}");
            assert!(!ranges_contain(3 * MIB..3 * MIB + 1), "{ext:?}");
        }
        // Clipping to a shorter length.
        let clipped = data_extents(f.as_file(), MIB + 4096).unwrap();
        assert_eq!(clipped.last().unwrap().end, MIB + 4096);
        assert!(data_extents(f.as_file(), 0).unwrap().is_empty());
    }

    #[test]
    fn copy_is_identical_and_sparse() {
        let (src, expect) = sample();
        let dst = tempfile::NamedTempFile::new().unwrap();
        // Stale content in the destination must not survive.
        dst.as_file().write_all_at(&[0xAA; 4096], 3 * MIB).unwrap();
        let last = std::cell::Cell::new(0u64);
        copy_sparse(src.as_file(), dst.as_file(), 16 * MIB, &|p| {
            assert!(p >= last.get(), "progress went backwards");
            last.set(p);
        })
        .unwrap();
        assert_eq!(last.get(), 16 * MIB);
        let got = std::fs::read(dst.path()).unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "copied content differs");
        let allocated = dst.as_file().metadata().unwrap().blocks() * 512;
        // 100 KiB + 8 KiB of data, each within one 64 KiB block or two: well under 1 MiB; the
        // all-zero MiB at 10 MiB must not have been written.
        assert!(allocated < 512 << 10, "allocated {allocated} bytes");
    }

    #[test]
    fn copy_handles_short_source() {
        let src = tempfile::NamedTempFile::new().unwrap();
        src.as_file().write_all_at(&pattern(1000, 3), 0).unwrap();
        let dst = tempfile::NamedTempFile::new().unwrap();
        copy_sparse(src.as_file(), dst.as_file(), 3 * MIB, &|_| {}).unwrap();
        let got = std::fs::read(dst.path()).unwrap();
        assert_eq!(got.len() as u64, 3 * MIB);
        assert_eq!(&got[..1000], &pattern(1000, 3)[..]);
        assert!(is_zero(&got[1000..]));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 1000]));
        for pos in [0, 63, 64, 500, 999] {
            let mut b = vec![0u8; 1000];
            b[pos] = 1;
            assert!(!is_zero(&b), "missed byte at {pos}");
        }
    }
}
