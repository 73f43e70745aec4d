//! The raw disk compressed: `.raw.zst` (multithreaded zstd) and `.raw.xz` (multithreaded xz),
//! for downloads and for `zstdcat`/`xzcat | dd` onto a device.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// Copies the whole raw (holes read as zeros) into `sink`, reporting bytes read.
fn pump(raw: &Path, sink: &mut dyn Write, progress: &dyn Fn(u64)) -> Result<()> {
    let mut src = File::open(raw).with_context(|| format!("opening {}", raw.display()))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).context("reading the raw image")?;
        if n == 0 {
            return Ok(());
        }
        sink.write_all(&buf[..n]).context("compressing")?;
        total += n as u64;
        progress(total);
    }
}

pub fn zstd(raw: &Path, out: &File, threads: usize, progress: &dyn Fn(u64)) -> Result<()> {
    let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(out), 3)?;
    enc.multithread(threads as u32)
        .context("enabling zstd threads")?;
    enc.include_checksum(true)?;
    pump(raw, &mut enc, progress)?;
    enc.finish()?.flush().context("writing the .zst")?;
    Ok(())
}

pub fn xz(raw: &Path, out: &File, threads: usize, progress: &dyn Fn(u64)) -> Result<()> {
    let stream = liblzma::stream::MtStreamBuilder::new()
        .threads(threads as u32)
        .preset(6)
        .check(liblzma::stream::Check::Crc64)
        .encoder()
        .context("setting up the xz encoder")?;
    let mut enc = liblzma::write::XzEncoder::new_stream(BufWriter::new(out), stream);
    pump(raw, &mut enc, progress)?;
    enc.finish()?.flush().context("writing the .xz")?;
    Ok(())
}
