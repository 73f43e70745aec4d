//! qcow2 (version 3, "compat 1.1"), written natively.
//!
//! The image is laid out once, in order: header, refcount table, L1 table, the L2 tables that
//! have data, refcount blocks, then the data clusters in guest order. Every allocated cluster
//! has refcount 1 (so every L1/L2 entry carries the COPIED flag), guest clusters without data
//! stay unallocated and read as zeros. Data moves raw to qcow2 with copy_file_range, inside
//! the kernel, which is what makes this several times faster than `qemu-img convert` for the
//! same result; the layout is a pure function of the raw's content, so it is reproducible.
//! Format: QEMU's docs/interop/qcow2.txt. `qemu-img check` and `compare` verify the output
//! in the tests.

use crate::util::sparse;
use anyhow::{ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L1/L2 cluster.
const ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const COPIED: u64 = 1 << 63;

/// Where everything goes in the file, in clusters.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    refcount_table: u64,
    refcount_table_clusters: u64,
    l1: u64,
    l1_entries: u64,
    l1_clusters: u64,
    /// (L1 index, host cluster) of each L2 table.
    l2: Vec<(u64, u64)>,
    refcount_blocks: u64,
    refcount_block_count: u64,
    first_data: u64,
    total: u64,
}

fn layout(size: u64, data_clusters: &[u64]) -> Layout {
    let l1_entries = size.div_ceil(CLUSTER * ENTRIES);
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER).max(1);
    let mut l2_indices: Vec<u64> = data_clusters.iter().map(|c| c / ENTRIES).collect();
    l2_indices.dedup();
    // The refcount blocks must count themselves: grow until the sizes agree.
    let fixed = 1 + l1_clusters + l2_indices.len() as u64 + data_clusters.len() as u64;
    let (mut blocks, mut table) = (1u64, 1u64);
    loop {
        let total = fixed + table + blocks;
        let need_blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let need_table = (need_blocks * 8).div_ceil(CLUSTER);
        if need_blocks <= blocks && need_table <= table {
            break;
        }
        blocks = need_blocks.max(blocks);
        table = need_table.max(table);
    }
    let refcount_table = 1;
    let l1 = refcount_table + table;
    let first_l2 = l1 + l1_clusters;
    let l2 = l2_indices
        .iter()
        .enumerate()
        .map(|(i, idx)| (*idx, first_l2 + i as u64))
        .collect::<Vec<_>>();
    let refcount_blocks = first_l2 + l2.len() as u64;
    let first_data = refcount_blocks + blocks;
    Layout {
        refcount_table,
        refcount_table_clusters: table,
        l1,
        l1_entries,
        l1_clusters,
        l2,
        refcount_blocks,
        refcount_block_count: blocks,
        first_data,
        total: first_data + data_clusters.len() as u64,
    }
}

fn header(size: u64, l: &Layout) -> Vec<u8> {
    let mut h = Vec::with_capacity(112);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version 3 ("compat 1.1")
    h.extend_from_slice(&0u64.to_be_bytes()); // no backing file
    h.extend_from_slice(&0u32.to_be_bytes());
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // no encryption
    h.extend_from_slice(&(l.l1_entries as u32).to_be_bytes());
    h.extend_from_slice(&(l.l1 * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(l.refcount_table * CLUSTER).to_be_bytes());
    h.extend_from_slice(&(l.refcount_table_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // no snapshots
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount_order: 16-bit refcounts
    h.extend_from_slice(&104u32.to_be_bytes()); // header length
    h.extend_from_slice(&[0u8; 8]); // end of header extensions
    h
}

fn be_entries(entries: &[u64], clusters: u64) -> Vec<u8> {
    let mut out = vec![0u8; (clusters * CLUSTER) as usize];
    for (i, e) in entries.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
    }
    out
}

/// Guest clusters holding data: the raw's data extents, rounded out to whole clusters.
fn data_clusters(raw: &File, len: u64) -> std::io::Result<Vec<u64>> {
    let mut clusters: Vec<u64> = Vec::new();
    for r in sparse::data_extents(raw, len)? {
        let first = r.start / CLUSTER;
        let last = (r.end - 1) / CLUSTER;
        let from = clusters.last().map_or(first, |&c| first.max(c + 1));
        clusters.extend(from..=last);
    }
    Ok(clusters)
}

/// Copies `len` bytes in the kernel, falling back to read/write where copy_file_range
/// cannot (other file systems, old kernels).
fn copy_range(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> std::io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (src_off as i64, dst_off as i64, len);
    while left > 0 {
        // SAFETY: valid fds and offsets owned by this frame.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                left as usize,
                0,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if matches!(
                err.raw_os_error(),
                Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)
            ) {
                return copy_by_reading(src, off_in as u64, dst, off_out as u64, left);
            }
            return Err(err);
        }
        if n == 0 {
            // Past the source's end: the rest reads as zeros, which the new file already is.
            return Ok(());
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_by_reading(
    src: &File,
    mut from: u64,
    dst: &File,
    mut to: u64,
    mut left: u64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left as usize).min(buf.len());
        let got = sparse::read_full_at(src, &mut buf[..n], from)?;
        buf[got..n].fill(0);
        dst.write_all_at(&buf[..n], to)?;
        (from, to, left) = (from + n as u64, to + n as u64, left - n as u64);
    }
    Ok(())
}

/// Writes the qcow2 of `raw` (a disk of `disk_size` bytes) into `out`.
pub fn write_qcow2(raw: &Path, disk_size: u64, out: &File, progress: &dyn Fn(u64)) -> Result<()> {
    ensure!(
        disk_size.is_multiple_of(512),
        "qcow2: the disk size {disk_size} is not a whole number of sectors"
    );
    let (src, raw_len) = sparse::open_raw(raw, disk_size)?;
    let clusters = data_clusters(&src, raw_len).context("finding the raw's data")?;
    let l = layout(disk_size, &clusters);

    let mut l1 = vec![0u64; l.l1_entries as usize];
    for (idx, host) in &l.l2 {
        l1[*idx as usize] = (host * CLUSTER) | COPIED;
    }
    let mut l2_tables: Vec<Vec<u64>> = vec![vec![0u64; ENTRIES as usize]; l.l2.len()];
    let mut table_of = std::collections::HashMap::new();
    for (i, (idx, _)) in l.l2.iter().enumerate() {
        table_of.insert(*idx, i);
    }
    for (n, guest) in clusters.iter().enumerate() {
        let t = table_of[&(guest / ENTRIES)];
        l2_tables[t][(guest % ENTRIES) as usize] = ((l.first_data + n as u64) * CLUSTER) | COPIED;
    }
    let refcount_table: Vec<u64> = (0..l.refcount_block_count)
        .map(|b| (l.refcount_blocks + b) * CLUSTER)
        .collect();
    let mut refcounts = vec![0u8; (l.refcount_block_count * CLUSTER) as usize];
    for c in 0..l.total {
        refcounts[(c * 2) as usize..(c * 2 + 2) as usize].copy_from_slice(&1u16.to_be_bytes());
    }

    out.set_len(l.total * CLUSTER).context("sizing the qcow2")?;
    let write = |bytes: &[u8], cluster: u64, what: &str| {
        out.write_all_at(bytes, cluster * CLUSTER)
            .with_context(|| format!("writing the qcow2 {what}"))
    };
    write(&header(disk_size, &l), 0, "header")?;
    write(
        &be_entries(&refcount_table, l.refcount_table_clusters),
        l.refcount_table,
        "refcount table",
    )?;
    write(&be_entries(&l1, l.l1_clusters), l.l1, "L1 table")?;
    for ((_, host), table) in l.l2.iter().zip(&l2_tables) {
        write(&be_entries(table, 1), *host, "L2 table")?;
    }
    write(&refcounts, l.refcount_blocks, "refcount blocks")?;

    // Data: runs of consecutive guest clusters are consecutive in the file too.
    let mut i = 0;
    while i < clusters.len() {
        let mut j = i + 1;
        while j < clusters.len() && clusters[j] == clusters[j - 1] + 1 {
            j += 1;
        }
        let len = (j - i) as u64 * CLUSTER;
        copy_range(
            &src,
            clusters[i] * CLUSTER,
            out,
            (l.first_data + i as u64) * CLUSTER,
            len,
        )
        .context("copying data into the qcow2")?;
        progress(clusters[j - 1] * CLUSTER + CLUSTER);
        i = j;
    }
    progress(disk_size);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn layout_counts_every_cluster_once() {
        let l = layout(2 << 30, &[0, 1, 2, 9000, 20000]);
        assert_eq!(l.l1_entries, 4);
        assert_eq!(l.l2.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(l.total, 1 + 1 + 1 + 3 + 1 + 5);
        assert_eq!(l.first_data, 7);
        // Large enough to need several refcount blocks.
        let many: Vec<u64> = (0..100_000).collect();
        let l = layout(8 << 30, &many);
        assert!(l.refcount_block_count * REFCOUNTS_PER_BLOCK >= l.total);
        assert_eq!(
            l.refcount_block_count,
            l.total.div_ceil(REFCOUNTS_PER_BLOCK)
        );
    }

    #[test]
    fn qemu_img_checks_and_compares() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        let f = File::create(&raw).unwrap();
        let size = 1536u64 << 20; // three L2 tables' worth
        f.set_len(size).unwrap();
        // Data at the start, straddling a cluster boundary, in the second L2 range and at the end.
        for (off, byte) in [
            (0u64, 1u8),
            (CLUSTER - 10, 2),
            (700 << 20, 3),
            (size - 4096, 4),
        ] {
            f.write_all_at(&vec![byte; 5000.min((size - off) as usize)], off)
                .unwrap();
        }
        drop(f);
        let q = dir.path().join("d.qcow2");
        let out = File::create(&q).unwrap();
        write_qcow2(&raw, size, &out, &|_| {}).unwrap();
        drop(out);
        let run = |args: &[&str]| {
            let o = Command::new("qemu-img")
                .args(args)
                .output()
                .expect("qemu-img (qemu-utils)");
            assert!(
                o.status.success(),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let (r, qs) = (raw.to_str().unwrap(), q.to_str().unwrap());
        run(&["check", "-f", "qcow2", qs]);
        assert!(
            run(&["compare", "-f", "raw", "-F", "qcow2", r, qs]).contains("Images are identical")
        );
        let info = run(&["info", "--output=json", "-f", "qcow2", qs]);
        assert!(
            info.contains("\"compat\": \"1.1\"")
                && info.contains(&format!("\"virtual-size\": {size}")),
            "{info}"
        );
        // Only the clusters with data take space: 6 data clusters plus metadata.
        assert!(std::fs::metadata(&q).unwrap().len() < 16 * CLUSTER);
    }
}
