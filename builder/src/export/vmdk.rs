//! The VMDK's embedded descriptor, made honest after `qemu-img convert`.
//!
//! qemu-img names the extent in the descriptor after the file it writes (here a temporary
//! name) and gives the disk a random content id (CID). A monolithic streamOptimized VMDK
//! refers to itself through that extent line, so it must carry the artifact's final name; and
//! a CID derived from the image's seed makes the VMDK, and the OVA around it, reproducible.
//! The descriptor is plain text in a reserved area (SparseExtentHeader fields descriptorOffset
//! and descriptorSize, in sectors, per VMware's "Virtual Disk Format 5.0"), padded with NULs;
//! it is not covered by any checksum.

use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Rewrites the descriptor of the VMDK at `path`: extent named `extent_name`, CID `cid`.
pub fn set_descriptor(path: &Path, extent_name: &str, cid: u32) -> Result<()> {
    ensure!(
        !extent_name.contains(['"', '\n', '/']),
        "internal error: bad VMDK extent name {extent_name:?}"
    );
    let f = File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut header = [0u8; 512];
    f.read_exact_at(&mut header, 0)
        .context("reading the VMDK header")?;
    ensure!(
        &header[..4] == b"KDMV",
        "{} is not a sparse VMDK",
        path.display()
    );
    let field = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().expect("8 bytes"));
    let (offset, sectors) = (field(28) * 512, field(36) * 512);
    ensure!(
        sectors > 0 && sectors <= 1 << 20,
        "the VMDK has no embedded descriptor"
    );
    let mut area = vec![0u8; sectors as usize];
    f.read_exact_at(&mut area, offset)
        .context("reading the VMDK descriptor")?;
    let end = area.iter().position(|b| *b == 0).unwrap_or(area.len());
    let text = std::str::from_utf8(&area[..end]).context("the VMDK descriptor is not text")?;
    let (mut saw_cid, mut saw_extent) = (false, false);
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("CID=") {
            out.push_str(&format!("CID={cid:08x}"));
            saw_cid = true;
        } else if let Some(rest) = line
            .strip_prefix("RW ")
            .filter(|r| r.contains(" SPARSE \""))
        {
            let size = rest.split_whitespace().next().unwrap_or("");
            out.push_str(&format!("RW {size} SPARSE \"{extent_name}\""));
            saw_extent = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !saw_cid || !saw_extent {
        bail!("the VMDK descriptor lacks its CID or extent line");
    }
    ensure!(
        out.len() <= area.len(),
        "the new VMDK descriptor does not fit"
    );
    let mut new_area = out.into_bytes();
    new_area.resize(area.len(), 0);
    f.write_all_at(&new_area, offset)
        .context("writing the VMDK descriptor")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn convert(raw: &Path, out: &Path) {
        super::super::qemu_img::stream_optimized_vmdk(raw, out).expect("qemu-img (qemu-utils)");
    }

    #[test]
    fn same_input_same_vmdk_and_qemu_still_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("d.raw");
        let f = File::create(&raw).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[7u8; 300_000], 5 << 20).unwrap();
        drop(f);
        let (a, b) = (dir.path().join(".a.partial"), dir.path().join(".b.partial"));
        convert(&raw, &a);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        convert(&raw, &b);
        assert_ne!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "qemu-img alone differs"
        );
        for p in [&a, &b] {
            set_descriptor(p, "disk.vmdk", 0x0123abcd).unwrap();
        }
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let text = String::from_utf8_lossy(&std::fs::read(&a).unwrap()).into_owned();
        assert!(text.contains("CID=0123abcd\n") && text.contains("SPARSE \"disk.vmdk\""));
        let check = Command::new("qemu-img")
            .args(["check", "-f", "vmdk"])
            .arg(&a)
            .status()
            .unwrap();
        assert!(check.success());
        let cmp = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "vmdk"])
            .arg(&raw)
            .arg(&a)
            .status()
            .unwrap();
        assert!(cmp.success());
    }
}
