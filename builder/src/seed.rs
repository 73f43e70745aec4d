//! `appliance seed`: a NoCloud seed volume, the way to hand user-data to an image booted
//! outside a cloud (QEMU, libvirt, Proxmox). cloud-init's NoCloud datasource looks for a vfat
//! or iso9660 file system labelled `CIDATA` holding `user-data` and `meta-data` (and
//! optionally `network-config`); this writes the vfat one with the `fatfs` crate, so no
//! mkfs/mtools/genisoimage is needed.
//!
//! cloud-init ignores user-data it does not recognise, without a word; so the user-data must
//! start with one of the headers cloud-init knows, and meta-data must name an instance id,
//! or the seed is refused with a line saying why.

use crate::disk::fat::{self, FatFile, FatSpec};
use crate::util::partial::PartialFile;
use crate::util::size::{round_up, MIB};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The first bytes cloud-init recognises in user-data (cloudinit/handlers and user_data.py).
const USER_DATA_STARTS: &[&str] = &[
    "#cloud-config",
    "#!",
    "#include",
    "#cloud-boothook",
    "#part-handler",
    "#cloud-config-archive",
    "#upstart-job",
    "## template: jinja",
    "Content-Type: multipart/",
    "MIME-Version:",
];

/// Checks user-data the way cloud-init will classify it.
pub fn check_user_data(name: &str, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        bail!("user-data {name} is empty");
    }
    if data.starts_with(&[0x1f, 0x8b]) {
        return Ok(()); // gzip: cloud-init decompresses it first
    }
    let text = String::from_utf8_lossy(&data[..data.len().min(256)]);
    let start = text.trim_start_matches('\u{feff}');
    if !USER_DATA_STARTS.iter().any(|h| start.starts_with(h)) {
        let first = start
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect::<String>();
        bail!(
            "user-data {name} starts with {first:?}, which cloud-init ignores: begin it with #cloud-config (or #!, #include, a MIME multipart header)"
        );
    }
    Ok(())
}

/// The default meta-data: an instance id derived from the user-data, so a new user-data is a
/// new instance (and cloud-init runs its once-per-instance modules again).
pub fn default_meta_data(user_data: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(user_data));
    format!("instance-id: iid-{}\n", &h[..16])
}

fn check_meta_data(name: &str, data: &[u8]) -> Result<()> {
    let text =
        std::str::from_utf8(data).with_context(|| format!("meta-data {name} is not UTF-8 text"))?;
    let has_id = text.lines().any(|l| {
        let l = l.trim_start_matches(['{', ' ', '"']);
        l.starts_with("instance-id") && l.contains(':')
    });
    if !has_id {
        bail!("meta-data {name} has no instance-id (cloud-init's NoCloud needs one)");
    }
    Ok(())
}

/// Writes the seed volume to `out` (under a temporary name until complete).
pub fn write_seed(
    out: &Path,
    user_data: (&str, &[u8]),
    meta_data: Option<(&str, &[u8])>,
    network_config: Option<&[u8]>,
    unix_time: u64,
) -> Result<()> {
    check_user_data(user_data.0, user_data.1)?;
    let meta = match meta_data {
        Some((name, data)) => {
            check_meta_data(name, data)?;
            data.to_vec()
        }
        None => default_meta_data(user_data.1).into_bytes(),
    };
    let mut files = vec![
        FatFile {
            path: "user-data".into(),
            contents: user_data.1.to_vec(),
        },
        FatFile {
            path: "meta-data".into(),
            contents: meta,
        },
    ];
    if let Some(n) = network_config {
        files.push(FatFile {
            path: "network-config".into(),
            contents: n.to_vec(),
        });
    }
    let content: u64 = files.iter().map(|f| f.contents.len() as u64).sum();
    // FAT12/16 with room for the files and the FAT's own overhead.
    let len = round_up(content + content / 8 + 2 * MIB, MIB);
    let mut h = Sha256::new();
    for f in &files {
        h.update(&f.contents);
    }
    let digest = h.finalize();
    let spec = FatSpec {
        label: *b"CIDATA     ",
        volume_id: u32::from_le_bytes(digest[..4].try_into().expect("4 bytes")),
        fat_type: None,
    };
    let file = PartialFile::create(out)?;
    file.file().set_len(len).context("sizing the seed volume")?;
    fat::write_volume(file.file(), 0, len, spec, unix_time, &files)
        .with_context(|| format!("writing {}", out.display()))?;
    file.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn user_data_headers() {
        for good in [
            "#cloud-config\nhostname: x\n",
            "#!/bin/sh\necho hi\n",
            "Content-Type: multipart/mixed; boundary=x\n",
        ] {
            check_user_data("u", good.as_bytes()).unwrap();
        }
        check_user_data("u", &[0x1f, 0x8b, 8, 0]).unwrap();
        assert_eq!(
            check_user_data("u", b"").unwrap_err().to_string(),
            "user-data u is empty"
        );
        assert_eq!(
            check_user_data("u", b"hostname: x\n").unwrap_err().to_string(),
            "user-data u starts with \"hostname: x\", which cloud-init ignores: begin it with #cloud-config (or #!, #include, a MIME multipart header)"
        );
        check_meta_data("m", b"instance-id: a\nlocal-hostname: b\n").unwrap();
        check_meta_data("m", b"{\"instance-id\": \"a\"}").unwrap();
        assert_eq!(
            check_meta_data("m", b"local-hostname: b\n")
                .unwrap_err()
                .to_string(),
            "meta-data m has no instance-id (cloud-init's NoCloud needs one)"
        );
        assert_eq!(default_meta_data(b"x"), default_meta_data(b"x"));
        assert_ne!(default_meta_data(b"x"), default_meta_data(b"y"));
    }

    #[test]
    fn seed_is_a_cidata_vfat_that_tools_read() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seed.img");
        let ud = b"#cloud-config\nhostname: seeded\n";
        write_seed(&out, ("u", ud), None, Some(b"version: 2\n"), 1_700_000_000).unwrap();
        let run = |cmd: &str, args: &[&str]| {
            let o = Command::new(cmd).args(args).arg(&out).output().unwrap();
            assert!(
                o.status.success(),
                "{cmd}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        run("fsck.fat", &["-n"]);
        let blkid = run("blkid", &["-p"]);
        assert!(
            blkid.contains("LABEL=\"CIDATA\"") && blkid.contains("TYPE=\"vfat\""),
            "{blkid}"
        );
        let read = |name: &str| {
            Command::new("mtype")
                .arg("-i")
                .arg(&out)
                .arg(format!("::/{name}"))
                .output()
                .unwrap()
                .stdout
        };
        assert_eq!(read("user-data"), ud);
        assert_eq!(
            String::from_utf8(read("meta-data")).unwrap(),
            default_meta_data(ud)
        );
        assert_eq!(read("network-config"), b"version: 2\n");
        // The same input gives the same bytes.
        let again = dir.path().join("again.img");
        write_seed(
            &again,
            ("u", ud),
            None,
            Some(b"version: 2\n"),
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
        // Bad input writes nothing.
        let bad = dir.path().join("bad.img");
        assert!(write_seed(&bad, ("u", b"nope"), None, None, 0).is_err());
        assert!(!bad.exists());
    }
}
