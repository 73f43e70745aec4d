//! The root tree that goes on the disk, and what assembly needs to know about it.
//!
//! A tree is a directory, used in place and never modified (files assembly adds are written
//! into the file system image, not into the tree), or a tarball (plain, gzip, xz or zstd),
//! unpacked into the run's work directory with owners, modes, xattrs and device nodes kept.

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A root tree ready to read.
#[derive(Debug)]
pub struct RootTree {
    pub path: PathBuf,
}

impl RootTree {
    /// Opens `source`: a directory as it is, a tarball unpacked into `work`.
    pub fn open(source: &Path, work: &Path, progress: &dyn Fn(u64)) -> Result<Self> {
        let meta = std::fs::metadata(source)
            .with_context(|| format!("root tree {} does not exist", source.display()))?;
        if meta.is_dir() {
            return Ok(RootTree {
                path: source.to_path_buf(),
            });
        }
        if !meta.is_file() {
            bail!(
                "root tree {} is neither a directory nor a tarball",
                source.display()
            );
        }
        let dest = work.join("rootfs");
        std::fs::create_dir(&dest).with_context(|| format!("creating {}", dest.display()))?;
        unpack_tarball(source, &dest, progress)
            .with_context(|| format!("unpacking {}", source.display()))?;
        Ok(RootTree { path: dest })
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }
}

/// Counts bytes read through it, for progress.
struct Counting<R, F: Fn(u64)> {
    inner: R,
    total: u64,
    report: F,
}

impl<R: Read, F: Fn(u64)> Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        (self.report)(self.total);
        Ok(n)
    }
}

/// The tarball's content, decompressed by its magic bytes; `progress` gets the bytes of the
/// file read so far (compressed), to measure against its length.
fn open_decompressed<'a>(path: &Path, progress: &'a dyn Fn(u64)) -> Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 6];
    let n = File::open(path)?.read(&mut magic)?;
    let magic = &magic[..n];
    let f = BufReader::with_capacity(
        1 << 20,
        Counting {
            inner: File::open(path)?,
            total: 0,
            report: progress,
        },
    );
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(f))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(f)?)
    } else {
        Box::new(f)
    })
}

fn unpack_tarball(source: &Path, dest: &Path, progress: &dyn Fn(u64)) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("unpacking a root tarball keeps its owners and device nodes, which needs root");
    }
    let mut archive = tar::Archive::new(open_decompressed(source, progress)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            // The tar crate does not create special files: make them here.
            make_special(&entry, dest)?;
            continue;
        }
        entry
            .unpack_in(dest)
            .with_context(|| format!("unpacking {}", entry.path().unwrap_or_default().display()))?;
    }
    Ok(())
}

fn make_special<R: Read>(entry: &tar::Entry<R>, dest: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let h = entry.header();
    let rel = entry.path()?.into_owned();
    if rel.components().any(|c| {
        !matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    }) {
        bail!("archive entry {} leaves the tree", rel.display());
    }
    let target = dest.join(&rel);
    let kind = h.entry_type();
    let type_bits = if kind.is_character_special() {
        libc::S_IFCHR
    } else if kind.is_block_special() {
        libc::S_IFBLK
    } else {
        libc::S_IFIFO
    };
    let dev = libc::makedev(
        h.device_major()?.unwrap_or(0),
        h.device_minor()?.unwrap_or(0),
    );
    let mode = h.mode()? & 0o7777;
    let c = std::ffi::CString::new(target.as_os_str().as_bytes())?;
    let _ = std::fs::remove_file(&target);
    // SAFETY: plain system calls on a NUL-terminated path we own.
    unsafe {
        if libc::mknod(c.as_ptr(), type_bits | mode, dev) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("creating device node {}", rel.display()));
        }
        if libc::lchown(c.as_ptr(), h.uid()? as u32, h.gid()? as u32) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setting the owner of {}", rel.display()));
        }
    }
    Ok(())
}

/// A kernel in the tree's /boot and its initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub version: String,
    /// Path inside the tree, e.g. `/boot/vmlinuz-6.1.0-28-amd64`.
    pub image: String,
    pub initrd: Option<String>,
}

/// What assembly needs to know about a tree.
#[derive(Clone, Debug)]
pub struct TreeFacts {
    pub kernel: Kernel,
    /// `ID` from os-release (`debian`, `ubuntu`), which names the distribution's EFI directory.
    pub os_id: String,
    pub pretty_name: String,
    /// GRUB's i386-pc platform directory, when the tree has one (grub-pc-bin).
    pub grub_bios: Option<PathBuf>,
    /// GRUB's x86_64-efi platform directory (grub-efi-amd64-bin).
    pub grub_efi: Option<PathBuf>,
    /// Shim, its MOK manager and the signed GRUB it loads, when the tree has all of them.
    pub shim: Option<ShimSet>,
    /// Versions from the tree's dpkg database, for choosing the ext4 feature set.
    pub e2fsprogs_version: Option<String>,
    pub grub_version: Option<String>,
    pub usage: TreeUsage,
}

#[derive(Clone, Debug)]
pub struct ShimSet {
    pub shim: PathBuf,
    pub grub: PathBuf,
    pub mok_manager: Option<PathBuf>,
}

/// Space the tree takes on an ext4 file system with 4 KiB blocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeUsage {
    pub bytes: u64,
    pub inodes: u64,
}

impl TreeFacts {
    pub fn inspect(tree: &RootTree) -> Result<Self> {
        let kernel = find_kernel(tree)?;
        let os = std::fs::read_to_string(tree.join("etc/os-release"))
            .or_else(|_| std::fs::read_to_string(tree.join("usr/lib/os-release")))
            .unwrap_or_default();
        let os_id = os_release_value(&os, "ID").unwrap_or_else(|| "linux".into());
        let pretty_name = os_release_value(&os, "PRETTY_NAME").unwrap_or_else(|| "Linux".into());
        let platform = |dir: &str, marker: &str| {
            let p = tree.join(dir);
            p.join(marker).is_file().then_some(p)
        };
        let first = |names: &[&str]| names.iter().map(|n| tree.join(n)).find(|p| p.is_file());
        let shim = match (
            first(&[
                "usr/lib/shim/shimx64.efi.dualsigned",
                "usr/lib/shim/shimx64.efi.signed.latest",
                "usr/lib/shim/shimx64.efi.signed",
            ]),
            first(&["usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"]),
        ) {
            (Some(shim), Some(grub)) => Some(ShimSet {
                shim,
                grub,
                mok_manager: first(&["usr/lib/shim/mmx64.efi.signed", "usr/lib/shim/mmx64.efi"]),
            }),
            _ => None,
        };
        let status = std::fs::read_to_string(tree.join("var/lib/dpkg/status")).unwrap_or_default();
        Ok(TreeFacts {
            kernel,
            os_id,
            pretty_name,
            grub_bios: platform("usr/lib/grub/i386-pc", "boot.img"),
            grub_efi: platform("usr/lib/grub/x86_64-efi", "kernel.img"),
            shim,
            e2fsprogs_version: dpkg_version(&status, "e2fsprogs"),
            grub_version: dpkg_version(&status, "grub-common"),
            usage: measure(&tree.path)?,
        })
    }
}

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The installed version of `package` in a dpkg status file.
pub fn dpkg_version(status: &str, package: &str) -> Option<String> {
    crate::disk::manifest::parse_status(status)
        .into_iter()
        .find(|p| p.name == package && p.installed)
        .map(|p| p.version)
}

/// Compares Debian-style version strings well enough to pick the newest kernel and to compare
/// upstream versions: digit runs numerically, other runs by bytes, `~` sorting first.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let digit = rest.starts_with(|c: char| c.is_ascii_digit());
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            out.push((digit, &rest[..end]));
            rest = &rest[end..];
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(rb.iter()) {
        let ord = match (x.0, y.0) {
            (true, true) => {
                let (xt, yt) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xt.len().cmp(&yt.len()).then_with(|| xt.cmp(yt))
            }
            _ => {
                let key = |s: &str| {
                    s.bytes()
                        .map(|c| if c == b'~' { 0u16 } else { c as u16 + 1 })
                        .collect::<Vec<_>>()
                };
                key(x.1).cmp(&key(y.1))
            }
        };
        if ord.is_ne() {
            return ord;
        }
    }
    let tail = |r: &[(bool, &str)]| r.first().map(|(_, s)| s.starts_with('~'));
    match ra.len().cmp(&rb.len()) {
        std::cmp::Ordering::Greater if tail(&ra[rb.len()..]) == Some(true) => {
            std::cmp::Ordering::Less
        }
        std::cmp::Ordering::Less if tail(&rb[ra.len()..]) == Some(true) => {
            std::cmp::Ordering::Greater
        }
        o => o,
    }
}

fn find_kernel(tree: &RootTree) -> Result<Kernel> {
    let boot = tree.join("boot");
    let entries = std::fs::read_dir(&boot)
        .with_context(|| format!("the tree has no kernel: {} is missing", boot.display()))?;
    let mut versions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let Some(version) = versions.pop() else {
        bail!(
            "the tree has no kernel: no /boot/vmlinuz-* in {}",
            tree.path.display()
        );
    };
    let initrd = ["initrd.img-", "initramfs-"]
        .iter()
        .map(|p| format!("/boot/{p}{version}"))
        .find(|p| tree.join(p).is_file());
    Ok(Kernel {
        image: format!("/boot/vmlinuz-{version}"),
        initrd,
        version,
    })
}

/// Blocks and inodes the tree needs (hard links counted once), the way ext4 lays it out.
pub fn measure(root: &Path) -> Result<TreeUsage> {
    let mut seen = HashSet::new();
    let mut usage = TreeUsage::default();
    for entry in walkdir::WalkDir::new(root).same_file_system(true) {
        let entry = entry.with_context(|| format!("reading the tree {}", root.display()))?;
        let meta = entry.metadata()?;
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        usage.inodes += 1;
        let ft = meta.file_type();
        usage.bytes += if ft.is_file() {
            // Extent tree and xattr blocks are noise next to the rounding to whole blocks.
            crate::util::size::round_up(meta.len(), 4096)
        } else if ft.is_dir() {
            crate::util::size::round_up(meta.len().max(4096), 4096)
        } else if ft.is_symlink() && meta.len() >= 60 {
            4096
        } else {
            0
        };
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_like_dpkg() {
        assert_eq!(version_cmp("6.1.0-28-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(
            version_cmp("4.15.0-213-generic", "4.15.0-20-generic"),
            Greater
        );
        assert_eq!(version_cmp("1.47.0-2", "1.47.0-2"), Equal);
        assert_eq!(version_cmp("1.47.0~rc1", "1.47.0"), Less);
        assert_eq!(version_cmp("2.06-13", "2.12-1"), Less);
    }

    #[test]
    fn dpkg_status_versions() {
        let status = "Package: e2fsprogs\nStatus: install ok installed\nVersion: 1.44.1-1ubuntu1.4\n\n\
                      Package: grub-common\nStatus: deinstall ok config-files\nVersion: 2.02-2ubuntu8\n";
        assert_eq!(
            dpkg_version(status, "e2fsprogs").as_deref(),
            Some("1.44.1-1ubuntu1.4")
        );
        assert_eq!(dpkg_version(status, "grub-common"), None);
        assert_eq!(dpkg_version(status, "missing"), None);
    }

    #[test]
    fn kernel_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tree = RootTree {
            path: dir.path().to_path_buf(),
        };
        let err = find_kernel(&tree).unwrap_err().to_string();
        assert!(err.starts_with("the tree has no kernel: "), "{err}");
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        let err = find_kernel(&tree).unwrap_err().to_string();
        assert!(
            err.starts_with("the tree has no kernel: no /boot/vmlinuz-* in"),
            "{err}"
        );
        for f in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-28-amd64",
            "initrd.img-6.1.0-28-amd64",
        ] {
            std::fs::write(dir.path().join("boot").join(f), b"x").unwrap();
        }
        let k = find_kernel(&tree).unwrap();
        assert_eq!(k.image, "/boot/vmlinuz-6.1.0-28-amd64");
        assert_eq!(k.initrd.as_deref(), Some("/boot/initrd.img-6.1.0-28-amd64"));
    }

    #[test]
    fn os_release() {
        let t = "NAME=\"Ubuntu\"\nID=ubuntu\nPRETTY_NAME=\"Ubuntu 18.04.6 LTS\"\n";
        assert_eq!(os_release_value(t, "ID").as_deref(), Some("ubuntu"));
        assert_eq!(
            os_release_value(t, "PRETTY_NAME").as_deref(),
            Some("Ubuntu 18.04.6 LTS")
        );
    }
}
