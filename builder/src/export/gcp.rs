//! Google Compute Engine image tarball: `disk.raw` in a GNU tar, gzip-compressed.
//!
//! GCE imports a `.tar.gz` holding exactly one file, `disk.raw`, whose size is a whole number of
//! GiB, written in the GNU "oldgnu" tar format with holes stored sparse (what
//! `tar --format=oldgnu -Sczf` makes). This module writes the same thing, only faster.
//!
//! # Tar layout (GNU old sparse format, as in GNU tar's `sparse.c`)
//!
//! - One header block, typeflag `S`. `size` holds the number of bytes stored in the archive (the
//!   sum of the data regions), `realsize` the apparent size of the file. The header carries the
//!   first 4 entries of the sparse map (offset, length); if there are more, `isextended` is set
//!   and extension blocks follow, 21 entries each, chained by their own `isextended` flag.
//! - When the file ends in a hole, the map ends with a zero-length entry at `realsize`: GNU tar
//!   does the same, and its extractor relies on that entry to extend the file to its full size
//!   (it truncates at that offset) instead of stopping after the last data byte.
//! - The data regions follow one after another. GNU tar reads each region block by block, so a
//!   region must fill whole 512-byte blocks: every region here starts and ends on a multiple of
//!   512 (bytes pulled in by the rounding are just file contents, usually zeros).
//! - The archive ends with two zero blocks and is padded with zeros to a 10240-byte record, as
//!   GNU tar's default blocking factor of 20 does.
//!
//! The stored regions are the filesystem's data extents ([`sparse::data_extents`]) minus any
//! 64 KiB-aligned block that is all zeros, so a fully allocated raw still gives a small archive.
//! This needs a scanning pass over the data before the header (which holds the map) is written;
//! the second pass then usually reads from the page cache.
//!
//! # Parallel gzip (as pigz does it)
//!
//! The tar stream is cut into 1 MiB chunks at fixed offsets. Worker threads compress chunks
//! independently as raw deflate at level 6, each primed with the last 32 KiB of the previous
//! chunk as dictionary (so the ratio barely suffers from the cuts). Every chunk but the last ends
//! with a sync flush, which ends the deflate data on a byte boundary without ending the stream,
//! so the pieces concatenate into one valid deflate stream; the last chunk ends with a final
//! block. The pieces are written in order inside one gzip member whose header has no name and
//! MTIME 0 (reproducible), followed by the CRC-32 (combined from the per-chunk CRCs) and the
//! length mod 2^32. Chunk boundaries and dictionaries depend only on the input, and every chunk
//! gets a fresh compressor, so the output is the same bytes whatever the number of threads or
//! their timing.
//!
//! Chunk `i` goes to worker `i % threads` and the writer collects results in the same round-robin
//! order; every channel is bounded, so at most a few chunks per worker are in memory at once.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;

use anyhow::{bail, ensure, Context, Result};
use flate2::{Compress, Compression, FlushCompress, Status};
use tar::{EntryType, GnuExtSparseHeader, Header};

use crate::util::sparse::{self, is_zero, push_merged, read_full_at, ZERO_BLOCK};

const GIB: u64 = 1 << 30;
const BLOCK: u64 = 512;
/// GNU tar's default record: 20 blocks.
const RECORD: u64 = 20 * BLOCK;
/// Uncompressed bytes per compression job; fixed so the output does not depend on threads.
const CHUNK: usize = 1 << 20;
/// Deflate's window: the most of the previous chunk a dictionary can use.
const DICT: usize = 32 << 10;
/// Read size of the zero-scanning pass.
const SCAN_BUF: u64 = 1 << 20;
/// Jobs (and results) that may queue per worker.
const QUEUE: usize = 2;
/// Sparse map entries in the main header and in each extension block.
const SPARSE_IN_HEADER: usize = 4;
const SPARSE_IN_EXT: usize = 21;

/// Writes the GCE image tarball of `raw` (a disk image of `disk_size` bytes) to `out`.
///
/// The entry `disk.raw` is `disk_size` rounded up to a whole GiB, the padding being a hole;
/// `mtime` is its modification time (seconds since the epoch). `threads` compression threads are
/// used (0 counts as 1). `progress` receives how far into the disk (of `disk_size` bytes) the
/// archive has got; it is only called from the calling thread.
pub fn write_gcp_tarball(
    raw: &Path,
    disk_size: u64,
    out: &mut File,
    mtime: u64,
    threads: usize,
    progress: &dyn Fn(u64),
) -> Result<()> {
    ensure!(disk_size > 0, "GCE tarball: the disk size is zero");
    let (file, file_len) = sparse::open_raw(raw, disk_size)?;
    let real_size = disk_size.div_ceil(GIB) * GIB;

    let regions = stored_regions(&file, file_len, real_size)
        .with_context(|| format!("scanning {} for data", raw.display()))?;
    let header = sparse_header(&regions, real_size, mtime).context("building the tar header")?;
    let stored: u64 = regions.iter().map(|r| r.end - r.start).sum();
    let tar_len = (header.len() as u64 + stored + 2 * BLOCK).div_ceil(RECORD) * RECORD;

    let (crc, len) = compress_parallel(out, threads.max(1), |sink| {
        sink.write(&header)?;
        for region in &regions {
            let mut pos = region.start;
            while pos < region.end {
                let n = sink
                    .fill_from(&file, pos, region.end - pos)
                    .with_context(|| format!("reading {} at offset {pos}", raw.display()))?;
                pos += n;
                progress(pos.min(disk_size));
            }
        }
        // End-of-archive marker plus record padding: all zeros.
        let trailer = tar_len - header.len() as u64 - stored;
        sink.zeros(trailer)?;
        Ok(())
    })?;
    ensure!(
        len == tar_len,
        "produced {len} bytes of tar stream, expected {tar_len}"
    );

    let mut trailer = [0u8; 8];
    trailer[..4].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    trailer[4..].copy_from_slice(&(len as u32).to_le_bytes());
    out.write_all(&trailer)
        .context("writing the gzip trailer")?;
    out.flush().context("flushing the GCE tarball")?;
    progress(disk_size);
    Ok(())
}

/// The byte ranges of the raw disk to store: data extents minus 64 KiB-aligned all-zero blocks,
/// widened to whole 512-byte blocks, merged, sorted.
fn stored_regions(file: &File, file_len: u64, real_size: u64) -> Result<Vec<Range<u64>>> {
    let extents = sparse::data_extents(file, file_len).context("finding data extents")?;
    let mut regions: Vec<Range<u64>> = Vec::new();
    let mut buf = vec![0u8; SCAN_BUF as usize];
    for extent in extents {
        let mut pos = extent.start;
        while pos < extent.end {
            // Pieces after the first start on a ZERO_BLOCK boundary so windows are whole.
            let piece_end = (pos - pos % ZERO_BLOCK + SCAN_BUF).min(extent.end);
            let piece = &mut buf[..(piece_end - pos) as usize];
            let got =
                read_full_at(file, piece, pos).with_context(|| format!("reading offset {pos}"))?;
            piece[got..].fill(0);
            let mut at = pos;
            while at < piece_end {
                let window_end = (at - at % ZERO_BLOCK + ZERO_BLOCK).min(piece_end);
                let bytes = &piece[(at - pos) as usize..(window_end - pos) as usize];
                if !is_zero(bytes) {
                    let start = at - at % BLOCK;
                    let end = window_end.div_ceil(BLOCK) * BLOCK;
                    push_merged(&mut regions, start..end.min(real_size));
                }
                at = window_end;
            }
            pos = piece_end;
        }
    }
    Ok(regions)
}

/// The header block of `disk.raw` and its sparse extension blocks.
fn sparse_header(regions: &[Range<u64>], real_size: u64, mtime: u64) -> Result<Vec<u8>> {
    let mut map: Vec<(u64, u64)> = regions.iter().map(|r| (r.start, r.end - r.start)).collect();
    // The file ends in a hole: record it as GNU tar does, so extraction extends the file.
    if regions.last().is_none_or(|r| r.end < real_size) {
        map.push((real_size, 0));
    }
    let stored: u64 = regions.iter().map(|r| r.end - r.start).sum();

    let mut header = Header::new_gnu();
    header
        .set_path("disk.raw")
        .context("setting the entry name")?;
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_username("root").context("setting uname")?;
    header.set_groupname("root").context("setting gname")?;
    header.set_mtime(mtime);
    header.set_entry_type(EntryType::GNUSparse);
    // For a sparse entry `size` is what the archive stores, `realsize` the apparent size.
    header.set_size(stored);
    let gnu = header
        .as_gnu_mut()
        .context("a GNU header is not seen as GNU")?;
    gnu.set_real_size(real_size);
    let (first, rest) = map.split_at(map.len().min(SPARSE_IN_HEADER));
    for (slot, &(offset, len)) in gnu.sparse.iter_mut().zip(first) {
        slot.set_offset(offset);
        slot.set_length(len);
    }
    gnu.set_is_extended(!rest.is_empty());
    header.set_cksum();

    let mut blocks = header.as_bytes().to_vec();
    let mut groups = rest.chunks(SPARSE_IN_EXT).peekable();
    while let Some(group) = groups.next() {
        let mut ext = GnuExtSparseHeader::new();
        for (slot, &(offset, len)) in ext.sparse_mut().iter_mut().zip(group) {
            slot.set_offset(offset);
            slot.set_length(len);
        }
        ext.set_is_extended(groups.peek().is_some());
        blocks.extend_from_slice(ext.as_bytes());
    }
    Ok(blocks)
}

/// One chunk of the uncompressed stream, for a worker.
struct Job {
    data: Vec<u8>,
    /// The up to 32 KiB of input before `data`, to prime the compressor with.
    dict: Vec<u8>,
    last: bool,
}

/// A compressed chunk, and the CRC and length of its input.
struct Piece {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
    len: u64,
}

/// Cuts the byte stream handed to it into fixed-size chunks and dispatches them round-robin.
struct ChunkSink {
    buf: Vec<u8>,
    prev_tail: Vec<u8>,
    next: usize,
    senders: Vec<SyncSender<Job>>,
}

impl ChunkSink {
    fn space(&self) -> usize {
        CHUNK - self.buf.len()
    }

    /// Sends the current chunk if it is full (or, with `last`, whatever it holds).
    fn dispatch(&mut self, last: bool) -> Result<()> {
        if self.buf.len() < CHUNK && !last {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let dict = std::mem::take(&mut self.prev_tail);
        self.prev_tail = data[data.len().saturating_sub(DICT)..].to_vec();
        let worker = self.next % self.senders.len();
        self.next += 1;
        if self.senders[worker].send(Job { data, dict, last }).is_err() {
            // The worker is gone: it (or the writer) failed; its error is reported on join.
            bail!("compression worker stopped");
        }
        Ok(())
    }

    fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let n = self.space().min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.dispatch(false)?;
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let k = (self.space() as u64).min(n) as usize;
            self.buf.resize(self.buf.len() + k, 0);
            n -= k as u64;
            self.dispatch(false)?;
        }
        Ok(())
    }

    /// Appends up to `max` bytes of `file` at `offset` (zeros past its end) straight into the
    /// chunk buffer, without an intermediate copy; returns how many bytes were appended.
    fn fill_from(&mut self, file: &File, offset: u64, max: u64) -> Result<u64> {
        let n = (self.space() as u64).min(max) as usize;
        let start = self.buf.len();
        self.buf.resize(start + n, 0);
        // Past the end of the file the disk reads as zeros; resize() already put them there,
        // so a short read needs no further handling.
        read_full_at(file, &mut self.buf[start..], offset)?;
        self.dispatch(false)?;
        Ok(n as u64)
    }
}

/// Runs `produce` to generate the uncompressed stream, compresses it on `threads` workers and
/// writes the gzip header and deflate data to `out`. Returns the CRC-32 and length of the
/// uncompressed stream; the caller writes the gzip trailer.
fn compress_parallel(
    out: &mut File,
    threads: usize,
    produce: impl FnOnce(&mut ChunkSink) -> Result<()>,
) -> Result<(u32, u64)> {
    // Gzip header (RFC 1952): deflate, no flags (no name), MTIME 0, XFL 0, OS 3 (Unix).
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])
        .context("writing the gzip header")?;

    thread::scope(|scope| {
        let mut job_senders = Vec::with_capacity(threads);
        let mut result_receivers = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (job_tx, job_rx) = sync_channel::<Job>(QUEUE);
            let (res_tx, res_rx) = sync_channel::<Result<Piece>>(QUEUE);
            job_senders.push(job_tx);
            result_receivers.push(res_rx);
            workers.push(scope.spawn(move || compress_worker(job_rx, res_tx)));
        }
        let writer = scope.spawn(move || write_pieces(out, result_receivers));

        let mut sink = ChunkSink {
            buf: Vec::with_capacity(CHUNK),
            prev_tail: Vec::new(),
            next: 0,
            senders: job_senders,
        };
        let produced = produce(&mut sink).and_then(|()| sink.dispatch(true));
        let chunks = sink.next;
        // Closing the job channels lets the workers, then the writer, finish.
        drop(sink);
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a compression thread panicked"))?;
        }
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the gzip writer thread panicked"))?;
        // A writer (or compression) failure makes the producer fail too, with a vaguer
        // message, so it is reported first; a read failure leaves the writer successful.
        let (crc, len, pieces) = written?;
        produced.context("producing the tar stream")?;
        ensure!(
            pieces == chunks,
            "wrote {pieces} compressed chunks of {chunks}"
        );
        Ok((crc, len))
    })
}

/// Compresses every job it receives; stops when the job channel closes or the writer is gone.
fn compress_worker(jobs: Receiver<Job>, results: SyncSender<Result<Piece>>) {
    for job in jobs {
        let piece = compress_chunk(&job);
        let failed = piece.is_err();
        if results.send(piece).is_err() || failed {
            return;
        }
    }
}

fn compress_chunk(job: &Job) -> Result<Piece> {
    // A fresh compressor for every chunk, not one reused with reset(): zlib-rs's output after
    // a reset can depend on what the compressor saw before (stale window bytes steer match
    // selection, zlib-rs issue #459), which would make the output depend on which worker got
    // which chunk. A new one starts from a zeroed window; setting it up is cheap next to
    // compressing 1 MiB. Raw deflate (no zlib header): the gzip framing is written around it.
    let mut deflate = Compress::new(Compression::new(6), false);
    if !job.dict.is_empty() {
        deflate
            .set_dictionary(&job.dict)
            .context("priming the compressor with the previous chunk")?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Deflate can expand incompressible data slightly; start with room for that.
    let mut deflated = Vec::with_capacity(job.data.len() + job.data.len() / 16 + 1024);
    let mut input = &job.data[..];
    loop {
        if deflated.len() == deflated.capacity() {
            deflated.reserve(64 << 10);
        }
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(input, &mut deflated, flush)
            .context("compressing a chunk")?;
        input = &input[(deflate.total_in() - before) as usize..];
        // Done when all input is consumed and the flush completed, i.e. zlib did not stop
        // for lack of output space (Finish additionally reports StreamEnd).
        let room_left = deflated.len() < deflated.capacity();
        match (job.last, status) {
            (true, Status::StreamEnd) => break,
            (false, _) if input.is_empty() && room_left => break,
            _ => {}
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&job.data);
    Ok(Piece {
        deflated,
        crc,
        len: job.data.len() as u64,
    })
}

/// Writes compressed pieces in chunk order (round-robin over the workers) until the next
/// expected worker has nothing more; returns the combined CRC, input length and piece count.
fn write_pieces(
    out: &mut File,
    results: Vec<Receiver<Result<Piece>>>,
) -> Result<(u32, u64, usize)> {
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut count = 0usize;
    // Chunk `count` always comes from worker `count % n`, so the first closed channel in that
    // order marks the end of the stream.
    while let Ok(piece) = results[count % results.len()].recv() {
        let piece = piece?;
        out.write_all(&piece.deflated)
            .context("writing compressed data")?;
        crc.combine(&piece.crc);
        len += piece.len;
        count += 1;
    }
    Ok((crc.finalize(), len, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::process::Command;

    const MIB: u64 = 1 << 20;
    const MTIME: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    /// Compressible, text-like bytes that differ with `seed`.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "disk ", "image ", "sparse ", "gzip ", "tar ", "root ", "\n", "boot ",
        ];
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(WORDS[(state >> 61) as usize].as_bytes());
            if state & 0xff == 7 {
                out.extend_from_slice(&state.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    /// A sparse raw disk of `size` bytes with `pieces` written at their offsets; returns its
    /// path and its full contents.
    fn make_raw(dir: &Path, size: u64, pieces: &[(u64, Vec<u8>)]) -> (std::path::PathBuf, Vec<u8>) {
        let path = dir.join("raw.img");
        let file = File::create(&path).unwrap();
        file.set_len(size).unwrap();
        let mut content = vec![0u8; size as usize];
        for (off, data) in pieces {
            file.write_all_at(data, *off).unwrap();
            content[*off as usize..*off as usize + data.len()].copy_from_slice(data);
        }
        file.sync_all().unwrap();
        (path, content)
    }

    fn export(dir: &Path, raw: &Path, disk_size: u64, threads: usize) -> std::path::PathBuf {
        let out_path = dir.join(format!("out-{threads}.tar.gz"));
        let mut out = File::create(&out_path).unwrap();
        let last = std::cell::Cell::new(0);
        write_gcp_tarball(raw, disk_size, &mut out, MTIME, threads, &|p| {
            assert!(p >= last.get() && p <= disk_size, "bad progress {p}");
            last.set(p);
        })
        .unwrap();
        assert_eq!(last.get(), disk_size);
        out_path
    }

    /// Decompresses a gzip file, checking that it is exactly one member with a reproducible
    /// header (no name, MTIME 0).
    fn gunzip(path: &Path) -> Vec<u8> {
        let gz = std::fs::read(path).unwrap();
        assert_eq!(
            &gz[..10],
            &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3],
            "gzip header"
        );
        let mut decoder = flate2::read::GzDecoder::new(&gz[..]);
        let mut tar = Vec::new();
        decoder.read_to_end(&mut tar).unwrap();
        assert!(
            decoder.into_inner().is_empty(),
            "data after the first gzip member"
        );
        tar
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Extracts with GNU tar and checks the file: `content` then zeros up to `real_size`, and
    /// stored sparse (allocation well under `max_alloc`).
    fn check_extract(dir: &Path, archive: &Path, content: &[u8], real_size: u64, max_alloc: u64) {
        let x = dir.join(format!(
            "x-{}",
            archive.file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir(&x).unwrap();
        run(Command::new("tar")
            .arg("-xzSf")
            .arg(archive)
            .arg("-C")
            .arg(&x));
        let names: Vec<_> = std::fs::read_dir(&x)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["disk.raw"]);
        let file = File::open(x.join("disk.raw")).unwrap();
        let meta = file.metadata().unwrap();
        assert_eq!(meta.len(), real_size);
        assert!(
            meta.blocks() * 512 <= max_alloc,
            "extracted file not sparse: {} blocks",
            meta.blocks()
        );
        // Compare with the expected image (sparse too) using cmp(1): a byte loop over a whole
        // GiB is slow in debug builds.
        let expected = dir.join("expected.img");
        let want = File::create(&expected).unwrap();
        want.write_all_at(content, 0).unwrap();
        want.set_len(real_size).unwrap();
        run(Command::new("cmp").arg(&expected).arg(x.join("disk.raw")));
        std::fs::remove_dir_all(&x).unwrap();
    }

    /// The main tar header of the (uncompressed) archive.
    fn main_header(tar: &[u8]) -> Header {
        let mut h = Header::new_old();
        h.as_mut_bytes().copy_from_slice(&tar[..512]);
        h
    }

    #[test]
    fn small_disk_lists_extracts_and_is_valid_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, content) = make_raw(
            dir.path(),
            3 * MIB,
            &[
                (0, text(70_000, 1)),
                (MIB + 512, text(5000, 2)),
                (3 * MIB - 4096, text(4096, 3)),
            ],
        );
        let archive = export(dir.path(), &raw, 3 * MIB, 2);

        // (a) gzip's own check.
        run(Command::new("gzip").arg("-t").arg(&archive));

        // (b) GNU tar's listing: one entry, a whole GiB, our mtime and owner.
        let listing = run(Command::new("tar")
            .args(["--utc", "--full-time", "-tvzf"])
            .arg(&archive));
        let fields: Vec<&str> = listing.split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "-rw-r--r--",
                "root/root",
                "1073741824",
                "2023-11-14",
                "22:13:20",
                "disk.raw"
            ],
            "listing: {listing}"
        );

        // (c) Extraction restores the bytes, sparse.
        check_extract(dir.path(), &archive, &content, GIB, 4 * MIB);

        // The tar stream itself: a sparse entry storing only the data, GNU end of archive.
        let tar = gunzip(&archive);
        assert_eq!(tar.len() % RECORD as usize, 0);
        let header = main_header(&tar);
        assert_eq!(header.entry_type(), EntryType::GNUSparse);
        let gnu = header.as_gnu().unwrap();
        assert_eq!(gnu.real_size().unwrap(), GIB);
        assert!(!gnu.is_extended());
        // 3 data regions (as allocated by the filesystem, so rounded to its blocks), each
        // covering its piece, then the final hole marker.
        let map: Vec<(u64, u64)> = gnu
            .sparse
            .iter()
            .map(|s| (s.offset().unwrap(), s.length().unwrap()))
            .collect();
        assert_eq!(map[3], (GIB, 0), "map: {map:?}");
        for ((off, len), (piece_off, piece_len)) in
            map[..3]
                .iter()
                .zip([(0, 70_000), (MIB + 512, 5000), (3 * MIB - 4096, 4096)])
        {
            assert!(off % 512 == 0 && len % 512 == 0, "map: {map:?}");
            assert!(
                *off <= piece_off && piece_off + piece_len <= off + len,
                "map: {map:?}"
            );
            assert!(
                *len <= piece_len + 2 * 4096,
                "region larger than its blocks: {map:?}"
            );
        }
        let stored = header.entry_size().unwrap();
        assert_eq!(stored, map.iter().map(|m| m.1).sum::<u64>());
        let end = 512 + stored as usize;
        assert!(is_zero(&tar[end..]) && tar.len() - end >= 1024);
        assert_eq!(&tar[512..512 + 70_000], &content[..70_000]);
    }

    #[test]
    fn many_regions_use_extension_headers() {
        let dir = tempfile::tempdir().unwrap();
        // 60 data pieces, each alone in its own 64 KiB block, at an odd disk size so the last
        // one ends off a 512-byte boundary.
        let size = 60 * 128 * 1024 + 100;
        let mut pieces: Vec<(u64, Vec<u8>)> = (0..59u64)
            .map(|i| (i * 128 * 1024 + 4096, text(3000, i)))
            .collect();
        pieces.push((size - 700, text(700, 99)));
        let (raw, content) = make_raw(dir.path(), size, &pieces);
        let archive = export(dir.path(), &raw, size, 2);

        let tar = gunzip(&archive);
        let header = main_header(&tar);
        assert_eq!(header.entry_type(), EntryType::GNUSparse);
        let gnu = header.as_gnu().unwrap();
        assert!(gnu.is_extended());
        // 60 regions + end marker = 61 entries: 4 in the header, then 21 + 21 + 15.
        let mut entries = 4;
        let mut block = 1;
        loop {
            let mut ext = GnuExtSparseHeader::new();
            ext.as_mut_bytes()
                .copy_from_slice(&tar[block * 512..(block + 1) * 512]);
            entries += ext.sparse().iter().filter(|s| s.numbytes[0] != 0).count();
            block += 1;
            if !ext.is_extended() {
                break;
            }
        }
        assert_eq!((entries, block), (61, 4));

        let listing = run(Command::new("tar").arg("-tvzf").arg(&archive));
        assert!(listing.contains(" 1073741824 "), "listing: {listing}");
        check_extract(dir.path(), &archive, &content, GIB, 4 * MIB);
    }

    #[test]
    fn allocated_zeros_are_stored_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        // Fully written: zeros everywhere except two small pieces.
        let mut data = vec![0u8; (4 * MIB) as usize];
        data[100..200].copy_from_slice(&text(100, 5));
        data[(2 * MIB) as usize..(2 * MIB) as usize + 10].copy_from_slice(b"0123456789");
        let (raw, content) = make_raw(dir.path(), 4 * MIB, &[(0, data)]);
        let archive = export(dir.path(), &raw, 4 * MIB, 1);
        let tar = gunzip(&archive);
        // Two 64 KiB windows hold data; each is trimmed to the 512-byte blocks... of the window
        // (the whole 64 KiB, since detection works per window).
        assert_eq!(main_header(&tar).entry_size().unwrap(), 2 * ZERO_BLOCK);
        check_extract(dir.path(), &archive, &content, GIB, 4 * MIB);
    }

    /// Short runs of a few symbols: data on which a reused (reset) zlib-rs compressor gives
    /// different output than a fresh one, so thread-dependent compressor reuse shows up.
    fn runs(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let byte = b"abc\n"[(state >> 33) as usize % 4];
            let run = (state >> 40) % 7 + 1;
            out.extend((0..run).map(|_| byte));
        }
        out.truncate(len);
        out
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        // About 4.5 MiB of data so the stream spans several 1 MiB compression chunks, which
        // threads=1 and threads=2 distribute differently over the workers.
        let (raw, _) = make_raw(
            dir.path(),
            6 * MIB,
            &[
                (0, runs(3 * MIB as usize, 1)),
                (4 * MIB, text(1_500_000, 8)),
            ],
        );
        let one = std::fs::read(export(dir.path(), &raw, 6 * MIB, 1)).unwrap();
        let two = std::fs::read(export(dir.path(), &raw, 6 * MIB, 2)).unwrap();
        assert!(one == two, "threads=1 and threads=2 differ");
        run(Command::new("gzip")
            .arg("-t")
            .arg(dir.path().join("out-2.tar.gz")));
    }

    #[test]
    fn rejects_raw_larger_than_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, _) = make_raw(dir.path(), 2 * MIB, &[]);
        let mut out = File::create(dir.path().join("o.tar.gz")).unwrap();
        assert!(write_gcp_tarball(&raw, MIB, &mut out, 0, 1, &|_| {}).is_err());
    }
}
