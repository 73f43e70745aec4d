//! The root file system: ext4 made from the tree with `mke2fs -d`, written straight into the
//! disk image at the root partition's offset (`-E offset=`), so the tree is read once and the
//! file system is never copied. Files that assembly adds (fstab, grub.cfg) go in afterwards
//! with `debugfs -w` on `disk?offset=N`; the tree itself is never modified.
//!
//! mke2fs runs with a configuration file of ours (`MKE2FS_CONFIG`), so the host's
//! /etc/mke2fs.conf cannot change the result, and with an explicit feature list chosen for the
//! target: GRUB reads the file system before the kernel does, and the target's own e2fsck
//! checks it at every boot, so a feature either of them does not know makes an unbootable or
//! unfsckable image.

use crate::util::host;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::Command;
use uuid::Uuid;

/// Which ext4 features the root file system gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureSet {
    /// Read by e2fsprogs 1.44 and GRUB 2.02 (Ubuntu 18.04) and everything newer: no
    /// `metadata_csum_seed` (GRUB before 2.12 refuses it) and no `orphan_file` (e2fsck before
    /// 1.47 refuses it).
    Compat,
    /// Compat plus `metadata_csum_seed` and `orphan_file`, for trees whose e2fsprogs (1.47+) and
    /// GRUB (2.12+) know them.
    Current,
}

const COMPAT_FEATURES: &str = "has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,\
flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum";

impl FeatureSet {
    pub fn features(self) -> String {
        match self {
            FeatureSet::Compat => COMPAT_FEATURES.to_string(),
            FeatureSet::Current => format!("{COMPAT_FEATURES},metadata_csum_seed,orphan_file"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FeatureSet::Compat => "compat",
            FeatureSet::Current => "current",
        }
    }

    /// The newest set both the tree's e2fsprogs and its GRUB read. Unknown versions (no dpkg
    /// database) get the compatible set.
    pub fn for_target(e2fsprogs: Option<&str>, grub: Option<&str>) -> FeatureSet {
        let at_least = |v: Option<&str>, min: &str| {
            v.map(|v| {
                // Drop an epoch ("1:2.12-1") before comparing.
                let v = v.split_once(':').map_or(v, |(_, rest)| rest);
                crate::disk::tree::version_cmp(v, min).is_ge()
            })
            .unwrap_or(false)
        };
        if at_least(e2fsprogs, "1.47") && at_least(grub, "2.12") {
            FeatureSet::Current
        } else {
            FeatureSet::Compat
        }
    }
}

impl std::str::FromStr for FeatureSet {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "compat" => Ok(FeatureSet::Compat),
            "current" => Ok(FeatureSet::Current),
            other => bail!("unknown ext4 feature set '{other}' (expected auto, compat or current)"),
        }
    }
}

/// Everything that defines the root file system.
#[derive(Clone, Debug)]
pub struct RootFsSpec<'a> {
    pub tree: &'a Path,
    pub label: &'a str,
    pub uuid: Uuid,
    pub hash_seed: Uuid,
    pub features: FeatureSet,
    /// Byte offset of the root partition in the disk image.
    pub offset: u64,
    /// Size of the root partition in bytes.
    pub size: u64,
    pub source_date_epoch: Option<u64>,
}

const MKE2FS_CONF: &str = "[defaults]
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 5.0

[fs_types]
\text4 = {
\t}
\tsmall = {
\t}
\tfloppy = {
\t}
\tdefault = {
\t}
\tbig = {
\t}
\thuge = {
\t}
";

/// Bytes per inode: the file system gets one inode per this many bytes.
pub const INODE_RATIO: u64 = 16384;

/// Makes the root file system inside `disk` (which must already have its full length).
pub fn make_root_fs(disk: &Path, spec: &RootFsSpec, work: &Path) -> Result<()> {
    let mke2fs = host::require("mke2fs")?;
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).context("writing mke2fs.conf")?;
    let blocks = spec.size / 4096;
    let mut cmd = Command::new(mke2fs);
    cmd.env("MKE2FS_CONFIG", &conf)
        .env_remove("MKE2FS_SYNC")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096"])
        .arg("-O")
        .arg(format!("none,{}", spec.features.features()))
        .args(["-L", spec.label])
        .arg("-U")
        .arg(spec.uuid.to_string())
        .arg("-E")
        .arg(format!(
            "offset={},hash_seed={},root_owner=0:0",
            spec.offset, spec.hash_seed
        ))
        .arg("-d")
        .arg(spec.tree)
        .arg(disk)
        .arg(blocks.to_string());
    match spec.source_date_epoch {
        Some(t) => cmd.env("SOURCE_DATE_EPOCH", t.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    // Before mke2fs reads anything (see stale_atimes).
    let stale = match spec.source_date_epoch {
        Some(t) => stale_atimes(spec.tree, t)?,
        None => Vec::new(),
    };
    host::run(&mut cmd, "mke2fs (making the root file system)").map_err(|e| {
        let text = e.to_string();
        if text.contains("Could not allocate") || text.contains("No space left") {
            anyhow::anyhow!(
                "the root file system ran out of space while copying the tree: choose a larger --size ({text})"
            )
        } else {
            e
        }
    })?;
    if let Some(epoch) = spec.source_date_epoch {
        settle_access_times(disk, spec.offset, &stale, epoch, work)?;
    }
    Ok(())
}

/// Entries of `tree` (as absolute paths in the image) whose access time is before `epoch`.
///
/// mke2fs -d copies each entry's access time from the lstat it makes before reading the entry,
/// clamped to SOURCE_DATE_EPOCH only from above. An entry nobody has read since it was unpacked
/// (dpkg gives files and symlinks their package's date, years before the epoch) has an old
/// atime until its first reader: this run's mke2fs or GRUB steps, or another build of the same
/// tree at the same time. Whether the image got the old atime or the epoch depended on who came
/// first, so two builds of a fresh tree differed, more often on a loaded machine (issue 17: 22
/// inodes of /etc/alternatives symlinks). Access times only grow, so the entries old now are
/// the only ones that can end up below the epoch in the image; [`settle_access_times`] sets
/// them to the epoch, which every entry read since then gets from the clamping anyway.
fn stale_atimes(tree: &Path, epoch: u64) -> Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut stale = Vec::new();
    for entry in walkdir::WalkDir::new(tree).min_depth(1) {
        let entry = entry.with_context(|| format!("reading the tree {}", tree.display()))?;
        let meta = entry.metadata()?;
        if meta.atime() < epoch as i64 {
            let rel = entry.path().strip_prefix(tree).expect("below the tree");
            let mut path = b"/".to_vec();
            path.extend_from_slice(rel.as_os_str().as_bytes());
            stale.push(path);
        }
    }
    Ok(stale)
}

/// Sets the access time of `paths` in the file system at `offset` of `disk` to `epoch` (see
/// [`stale_atimes`]), in one debugfs run, and zeroes the superblock's lifetime-writes counter.
///
/// libext2fs adds what each writing session wrote to `s_kbytes_written`, and how much this run
/// writes depends on how many entries were stale, i.e. again on who read the tree first (seen
/// as 6 differing superblock bytes between two builds). A counter of 0 is left alone by
/// libext2fs (it only adds to a non-zero one), so later sessions (add_files) keep it at 0.
fn settle_access_times(
    disk: &Path,
    offset: u64,
    paths: &[Vec<u8>],
    epoch: u64,
    work: &Path,
) -> Result<()> {
    let mut script = Vec::new();
    for p in paths {
        if p.contains(&b'\n') {
            bail!(
                "cannot make the root file system reproducible: the tree has a name with a newline ({})",
                String::from_utf8_lossy(p).escape_debug()
            );
        }
        // debugfs's quoting: a doubled quote inside quotes is a quote.
        script.extend_from_slice(b"sif \"");
        for &b in p {
            if b == b'"' {
                script.push(b'"');
            }
            script.push(b);
        }
        script.extend_from_slice(format!("\" atime @{epoch}\n").as_bytes());
    }
    script.extend_from_slice(b"ssv kbytes_written 0\n");
    let script_path = work.join("debugfs-atimes.cmds");
    std::fs::write(&script_path, &script).context("writing the debugfs script for access times")?;
    // libext2fs stamps the superblock's last-write time when debugfs closes: the epoch, as
    // mke2fs and add_files have it, not the clock (which made two otherwise equal images differ
    // when their builds' debugfs runs fell in different seconds).
    let out = host::run(
        Command::new(host::require("debugfs")?)
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(format!("{}?offset={offset}", disk.display())),
        "debugfs (setting access times and the lifetime writes)",
    )?;
    // debugfs reports a failed command only as text on stderr, after its version banner.
    let errors = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .take(2)
        .collect::<Vec<_>>()
        .join("; ");
    if !errors.is_empty() {
        bail!(
            "setting access times and the lifetime writes in the root file system failed: {errors}"
        );
    }
    Ok(())
}

/// A file assembly adds to the root file system.
#[derive(Clone, Debug)]
pub struct AddedFile {
    /// Absolute path in the image.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

fn check_image_path(path: &str) -> Result<()> {
    if !path.starts_with('/')
        || path.contains(['\n', ' ', '"'])
        || path.contains("/../")
        || path.ends_with('/')
    {
        bail!("internal error: bad path {path:?} for the image");
    }
    Ok(())
}

/// Appends debugfs commands that create `path` and any missing parent (0755 root:root).
fn mkdirs(
    script: &mut String,
    made: &mut std::collections::HashSet<String>,
    tree: &Path,
    path: &str,
) {
    let mut dir = String::new();
    for part in path.trim_start_matches('/').split('/') {
        dir.push('/');
        dir.push_str(part);
        if !tree.join(dir.trim_start_matches('/')).is_dir() && made.insert(dir.clone()) {
            script.push_str(&format!(
                "mkdir {dir}\nsif {dir} mode 040755\nsif {dir} uid 0\nsif {dir} gid 0\n"
            ));
        }
    }
}

/// Writes `files` and `dirs` into the file system at `offset` in `disk`, creating missing
/// directories (0755 root:root) and replacing files the tree had. Every file is read back
/// afterwards, because debugfs reports errors in a script only as text.
pub fn add_files(
    disk: &Path,
    offset: u64,
    tree: &Path,
    files: &[AddedFile],
    dirs: &[&str],
    work: &Path,
    epoch: Option<u64>,
) -> Result<()> {
    let debugfs = host::require("debugfs")?;
    let device = format!("{}?offset={offset}", disk.display());
    let mut script = String::new();
    let mut made = std::collections::HashSet::new();
    for d in dirs {
        check_image_path(d)?;
        mkdirs(&mut script, &mut made, tree, d);
    }
    for (i, f) in files.iter().enumerate() {
        check_image_path(&f.path)?;
        if let Some((parent, _)) = f.path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            mkdirs(&mut script, &mut made, tree, parent);
        }
        let rel = f.path.trim_start_matches('/');
        let existing = tree.join(rel);
        if existing.symlink_metadata().is_ok() {
            if existing.is_dir() && !existing.is_symlink() {
                bail!("cannot add {}: the tree has a directory there", f.path);
            }
            script.push_str(&format!("rm {}\n", f.path));
        }
        let src = work.join(format!("added-{i}"));
        std::fs::write(&src, &f.contents).with_context(|| format!("staging {}", f.path))?;
        script.push_str(&format!(
            "write {} {}\nsif {p} mode 0{:o}\nsif {p} uid 0\nsif {p} gid 0\n",
            src.display(),
            f.path,
            0o100000 | f.mode,
            p = f.path
        ));
    }
    let script_path = work.join("debugfs.cmds");
    std::fs::write(&script_path, &script).context("writing the debugfs script")?;
    let mut cmd = Command::new(&debugfs);
    cmd.arg("-w").arg("-f").arg(&script_path).arg(&device);
    match epoch {
        Some(t) => cmd.env("SOURCE_DATE_EPOCH", t.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    host::run(&mut cmd, "debugfs (adding files to the root file system)")?;
    for d in dirs {
        let out = host::run(
            Command::new(&debugfs)
                .arg("-R")
                .arg(format!("stat {d}"))
                .arg(&device),
            "debugfs (checking an added directory)",
        )?;
        if !String::from_utf8_lossy(&out.stdout).contains("Type: directory") {
            bail!(
                "adding directory {d} to the root file system failed: {}",
                host::last_lines(&out, 2)
            );
        }
    }
    for f in files {
        let out = host::run(
            Command::new(&debugfs)
                .arg("-R")
                .arg(format!("cat {}", f.path))
                .arg(&device),
            "debugfs (reading back an added file)",
        )?;
        if out.stdout != f.contents {
            bail!(
                "adding {} to the root file system failed: {}",
                f.path,
                host::last_lines(&out, 2)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `path`'s access time (and its modification time, when given) without following a
    /// symlink.
    fn set_times(path: &Path, atime: libc::timespec, mtime: Option<libc::timespec>) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let omit = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        };
        let times = [atime, mtime.unwrap_or(omit)];
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        assert_eq!(rc, 0, "utimensat {}", path.display());
    }

    #[test]
    fn access_times_do_not_depend_on_who_read_the_tree_first() {
        const EPOCH: u64 = 1_700_000_000;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc/alternatives")).unwrap();
        std::fs::write(tree.join("etc/which"), "#!/bin/sh\n").unwrap();
        std::fs::write(tree.join("etc/a \"quoted\" name"), "x").unwrap();
        std::os::unix::fs::symlink("../which", tree.join("etc/alternatives/which")).unwrap();
        // Inodes over more inode table blocks (16 inodes each) than libext2fs caches (8), so
        // that how many entries are stale changes how much debugfs writes.
        std::fs::create_dir(tree.join("many")).unwrap();
        let many: Vec<String> = (0..320).map(|i| format!("many/f{i:03}")).collect();
        for rel in &many {
            std::fs::write(tree.join(rel), rel).unwrap();
        }
        // As dpkg leaves a tree: nothing read since, access time = package date < epoch.
        let old = libc::timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 0,
        };
        for rel in [
            "etc/which",
            "etc/a \"quoted\" name",
            "etc/alternatives/which",
            "etc/alternatives",
            "etc",
            "many",
        ]
        .into_iter()
        .chain(many.iter().map(String::as_str))
        {
            set_times(&tree.join(rel), old, Some(old));
        }
        let make = |name: &str| {
            let disk = dir.path().join(name);
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(64 << 20)
                .unwrap();
            let work = dir.path().join(format!("{name}.work"));
            std::fs::create_dir(&work).unwrap();
            let spec = RootFsSpec {
                tree: &tree,
                label: "t",
                uuid: Uuid::from_u128(1),
                hash_seed: Uuid::from_u128(2),
                features: FeatureSet::Compat,
                offset: 1 << 20,
                size: 32 << 20,
                source_date_epoch: Some(EPOCH),
            };
            make_root_fs(&disk, &spec, &work).unwrap();
            disk
        };
        let first = make("first.img");
        // The superblock's last-write time (s_wtime, at 0x30) is the epoch, not the clock of
        // the last debugfs run: it would make two builds a second apart differ.
        let image = std::fs::read(&first).unwrap();
        let at = (1 << 20) + 1024 + 0x30;
        let wtime = u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
        assert_eq!(u64::from(wtime), EPOCH, "the superblock's last-write time");
        let device = format!("{}?offset={}", first.display(), 1 << 20);
        for path in ["/etc/alternatives/which", "/etc/which", "/etc"] {
            let out = host::run(
                Command::new("debugfs")
                    .args(["-R", &format!("stat {path}")])
                    .arg(&device),
                "debugfs stat",
            )
            .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains(" atime: 0x6553f100:"), "{path}: {text}");
            // The modification time is the tree's.
            assert!(text.contains(" mtime: 0x5f5e1000:"), "{path}: {text}");
        }
        // The other side of the race: someone read the tree (relatime moved its access times
        // past the epoch) before the second build.
        let now = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        };
        for rel in ["etc/which", "etc/alternatives/which"]
            .into_iter()
            .chain(many.iter().map(String::as_str))
        {
            set_times(&tree.join(rel), now, None);
        }
        let second = make("second.img");
        assert!(
            std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap(),
            "the two images differ"
        );
    }

    #[test]
    fn feature_set_follows_the_target() {
        let table = [
            (
                Some("1.44.1-1ubuntu1.4"),
                Some("2.02-2ubuntu8.26"),
                FeatureSet::Compat,
            ),
            (
                Some("1.47.0-2+b2"),
                Some("2.06-13+deb12u2"),
                FeatureSet::Compat,
            ),
            (
                Some("1.47.0-2.4~exp1ubuntu4"),
                Some("2.12-1ubuntu7"),
                FeatureSet::Current,
            ),
            (Some("1.47.2-1"), Some("1:2.12-5"), FeatureSet::Current),
            (None, Some("2.12-1"), FeatureSet::Compat),
            (None, None, FeatureSet::Compat),
        ];
        for (e2fs, grub, want) in table {
            assert_eq!(
                FeatureSet::for_target(e2fs, grub),
                want,
                "{e2fs:?} {grub:?}"
            );
        }
        assert!(!FeatureSet::Compat.features().contains("metadata_csum_seed"));
        assert!(!FeatureSet::Compat.features().contains("orphan_file"));
        assert!(FeatureSet::Current
            .features()
            .ends_with("metadata_csum_seed,orphan_file"));
        assert_eq!(
            "newest".parse::<FeatureSet>().unwrap_err().to_string(),
            "unknown ext4 feature set 'newest' (expected auto, compat or current)"
        );
    }
}
