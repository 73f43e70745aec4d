//! `appliance assemble`: a root tree to a bootable disk image and its exports.
//!
//! Steps, in order: check the inputs and host tools; open (or unpack) the tree and inspect it;
//! size the disk; make the root ext4 directly inside the raw image; add fstab and grub.cfg;
//! write the ESP, GRUB for BIOS and the GPT; export; rename everything into place at once and
//! write SHA256SUMS. Nothing appears under a final name until every step succeeded.

use crate::disk::ext4::{self, AddedFile, FeatureSet, RootFsSpec};
use crate::disk::fat::{self, FatFile};
use crate::disk::gpt::{self, DiskLayout};
use crate::disk::grub;
use crate::disk::tree::{RootTree, TreeFacts, TreeUsage};
use crate::export::{self, ExportContext, Format};
use crate::util::host;
use crate::util::ids::IdSeed;
use crate::util::partial::{PartialFile, WorkDir};
use crate::util::progress::Reporter;
use crate::util::size::{human, round_up, GIB, MIB};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ROOT_LABEL: &str = "cloudimg-rootfs";

/// Which firmware the image boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootModes {
    pub bios: bool,
    pub uefi: bool,
}

impl BootModes {
    pub fn parse(text: &str) -> Result<Self> {
        let mut modes = BootModes {
            bios: false,
            uefi: false,
        };
        for word in text.split(',').map(str::trim) {
            match word {
                "bios" => modes.bios = true,
                "uefi" => modes.uefi = true,
                other => bail!("unknown boot mode '{other}' (expected bios, uefi or bios,uefi)"),
            }
        }
        Ok(modes)
    }
}

/// Everything `assemble` takes.
#[derive(Clone, Debug)]
pub struct AssembleOptions {
    /// A directory or a tarball (plain, gzip, xz or zstd).
    pub rootfs: PathBuf,
    pub out: PathBuf,
    /// Base name of the artifacts.
    pub name: String,
    /// Disk size; `None` sizes it from the tree.
    pub size: Option<u64>,
    pub boot: BootModes,
    pub formats: Vec<Format>,
    /// Seed of every identifier; `None`: derived from the name and SOURCE_DATE_EPOCH when that
    /// is set, random otherwise.
    pub seed: Option<String>,
    /// `None` chooses from the tree's e2fsprogs and GRUB versions.
    pub ext4_features: Option<FeatureSet>,
    pub source_date_epoch: Option<u64>,
    pub threads: usize,
}

/// What `assemble` made, for people and for `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Assembled {
    pub name: String,
    pub disk_size: u64,
    pub root_fs_uuid: String,
    pub esp_volume_id: String,
    pub ext4_features: String,
    pub kernel: String,
    pub boot: Vec<&'static str>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Artifact {
    pub format: &'static str,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// Checks an artifact base name: it becomes file names and the OVF's VM name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        bail!("--name '{name}' is not a valid image name (letters, digits, '.', '_' and '-'; not starting with '.' or '-')");
    }
    Ok(())
}

/// The smallest disk that holds the tree with the layout's overhead and the file system's own
/// metadata (inode tables at one 256-byte inode per 16 KiB, journal, group descriptors).
pub fn minimum_disk_size(usage: TreeUsage) -> u64 {
    let journal_and_slack = 128 * MIB + 32 * MIB;
    let data = usage.bytes + usage.bytes / 20 + journal_and_slack;
    // Inode tables take 1/64 of the file system; bitmaps and descriptors under 1% more.
    let by_data = data * 1000 / (1000 - 16 - 10);
    let by_inodes = usage.inodes * ext4::INODE_RATIO * 21 / 20;
    round_up(DiskLayout::overhead() + by_data.max(by_inodes), MIB)
}

/// The default disk size: the minimum plus a quarter (at least 256 MiB) of room, rounded up
/// to a whole GiB. cloud-init's growpart grows the root to the real disk at first boot.
pub fn default_disk_size(usage: TreeUsage) -> u64 {
    let min = minimum_disk_size(usage);
    round_up(min + (min / 4).max(256 * MIB), GIB)
}

/// Seconds since the Unix epoch, for timestamps when SOURCE_DATE_EPOCH is not set.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// fstab for the image: the tree's own entries, except any for / and /boot/efi, which are
/// replaced by the image's (by UUID, with the options Ubuntu's cloud images use for /).
pub fn fstab(existing: &str, root_uuid: &str, esp_id: Option<&str>, esp_fsck: bool) -> String {
    let mut out = String::new();
    for line in existing.lines() {
        let mount = line.split_whitespace().nth(1);
        let ours =
            !line.trim_start().starts_with('#') && matches!(mount, Some("/") | Some("/boot/efi"));
        if !ours && !line.contains("UNCONFIGURED FSTAB") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "UUID={root_uuid}\t/\text4\tdiscard,errors=remount-ro\t0 1\n"
    ));
    if let Some(id) = esp_id {
        // nofail: a missing or damaged ESP must not stop a BIOS boot.
        out.push_str(&format!(
            "UUID={id}\t/boot/efi\tvfat\tumask=0077,nofail\t0 {}\n",
            u8::from(esp_fsck)
        ));
    }
    out
}

/// Runs the whole assembly. On failure nothing is left behind: no artifact, no work
/// directory, and no output directory if this run created it.
pub fn assemble(opts: &AssembleOptions, reporter: &Reporter) -> Result<Assembled> {
    let created_out = !opts.out.exists();
    let result = assemble_in(opts, reporter);
    if result.is_err() && created_out {
        // remove_dir only removes an empty directory: anything else there stays.
        let _ = std::fs::remove_dir(&opts.out);
    }
    result
}

fn assemble_in(opts: &AssembleOptions, reporter: &Reporter) -> Result<Assembled> {
    check_request(opts)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating the output directory {}", opts.out.display()))?;
    let work = WorkDir::create(&opts.out, &opts.name)?;
    let tree = open_tree(opts, work.path(), reporter)?;
    let facts = inspect_tree(opts, &tree)?;
    let disk = plan_disk(opts, &facts)?;

    let raw = PartialFile::create(&opts.out.join(Format::Raw.file_name(&opts.name)))?;
    raw.file()
        .set_len(disk.size)
        .context("sizing the raw image")?;
    let parts = DiskParts {
        opts,
        raw: &raw,
        tree: &tree,
        facts: &facts,
        disk: &disk,
        work: work.path(),
    };
    let bootcode = parts.make_file_systems(reporter)?;
    parts.add_boot_config(bootcode, reporter)?;
    let artifacts = export_and_sum(opts, raw, &disk, &facts, reporter)?;

    let mut boot = Vec::new();
    if opts.boot.bios {
        boot.push("bios");
    }
    if opts.boot.uefi {
        boot.push("uefi");
    }
    Ok(Assembled {
        name: opts.name.clone(),
        disk_size: disk.size,
        root_fs_uuid: disk.root_uuid.to_string(),
        esp_volume_id: fat::volume_id_text(disk.esp_id),
        ext4_features: disk.features.name().to_string(),
        kernel: facts.kernel.version.clone(),
        boot,
        artifacts,
    })
}

/// Refuses what cannot be assembled before anything is written: the options, and the host
/// tools they need.
fn check_request(opts: &AssembleOptions) -> Result<()> {
    check_name(&opts.name)?;
    if !opts.boot.bios && !opts.boot.uefi {
        bail!("--boot needs at least one of bios, uefi");
    }
    if opts.formats.is_empty() {
        bail!("--formats needs at least one format");
    }
    if !opts.rootfs.exists() {
        bail!("root tree {} does not exist", opts.rootfs.display());
    }
    host::require("mke2fs")?;
    host::require("debugfs")?;
    if opts.boot.bios {
        host::require("grub-mkimage")?;
    }
    if opts
        .formats
        .iter()
        .any(|f| matches!(f, Format::Qcow2 | Format::Vmdk | Format::Ova))
    {
        host::require("qemu-img")?;
    }
    if opts.source_date_epoch.is_some() && host::mke2fs_version()? < (1, 47, 1) {
        bail!(
            "SOURCE_DATE_EPOCH is set but this mke2fs ignores it (1.47.1 or newer needed): \
             install a newer e2fsprogs (Debian 12: `apt-get install -t bookworm-backports e2fsprogs`)"
        );
    }
    Ok(())
}

/// The root tree: a directory as it is, a tarball unpacked into `work`.
fn open_tree(opts: &AssembleOptions, work: &Path, reporter: &Reporter) -> Result<RootTree> {
    if opts.rootfs.is_file() {
        let len = opts.rootfs.metadata().map(|m| m.len()).unwrap_or(0);
        let step = reporter.bytes("unpacking the root tarball", len);
        let tree = RootTree::open(&opts.rootfs, work, &|n| step.set(n))?;
        step.done();
        Ok(tree)
    } else {
        RootTree::open(&opts.rootfs, work, &|_| {})
    }
}

/// What the tree holds, checked against the boot modes asked for.
fn inspect_tree(opts: &AssembleOptions, tree: &RootTree) -> Result<TreeFacts> {
    let facts = TreeFacts::inspect(tree)?;
    if opts.boot.bios && facts.grub_bios.is_none() {
        bail!("--boot bios needs GRUB's i386-pc modules in the tree (/usr/lib/grub/i386-pc, package grub-pc-bin)");
    }
    if opts.boot.uefi && facts.shim.is_none() && facts.grub_efi.is_none() {
        bail!("{}", grub::UEFI_NEEDS);
    }
    if opts.boot.uefi && facts.shim.is_none() {
        host::require("grub-mkimage")?;
    }
    Ok(facts)
}

/// The disk decided before anything is written: its size and layout, the ext4 features, and
/// the identifiers and clock (derived from the seed for reproducible images).
struct DiskPlan {
    size: u64,
    layout: DiskLayout,
    features: FeatureSet,
    ids: IdSeed,
    clock: u64,
    root_uuid: uuid::Uuid,
    esp_id: u32,
}

fn plan_disk(opts: &AssembleOptions, facts: &TreeFacts) -> Result<DiskPlan> {
    let minimum = minimum_disk_size(facts.usage);
    let size = match opts.size {
        Some(s) if round_up(s, MIB) < minimum => bail!(
            "--size {} is too small for this tree ({} in {} files): the disk needs at least {}",
            human(s),
            human(facts.usage.bytes),
            facts.usage.inodes,
            human(minimum)
        ),
        Some(s) => round_up(s, MIB),
        None => default_disk_size(facts.usage),
    };
    let layout = DiskLayout::new(size)?;
    let features = opts.ext4_features.unwrap_or_else(|| {
        FeatureSet::for_target(
            facts.e2fsprogs_version.as_deref(),
            facts.grub_version.as_deref(),
        )
    });
    let ids = match (&opts.seed, opts.source_date_epoch) {
        (Some(seed), _) => IdSeed::from_text(seed),
        (None, Some(epoch)) => IdSeed::from_text(&format!("{}\n{epoch}", opts.name)),
        (None, None) => IdSeed::random(),
    };
    Ok(DiskPlan {
        size,
        layout,
        features,
        clock: opts.source_date_epoch.unwrap_or_else(now),
        root_uuid: ids.uuid("root-fs"),
        esp_id: ids.u32("esp-volume-id"),
        ids,
    })
}

/// What the raw image's parts are made from.
struct DiskParts<'a> {
    opts: &'a AssembleOptions,
    raw: &'a PartialFile,
    tree: &'a RootTree,
    facts: &'a TreeFacts,
    disk: &'a DiskPlan,
    work: &'a Path,
}

impl DiskParts<'_> {
    /// The root file system (mke2fs, a child process) and the boot pieces (ESP and GRUB, in
    /// this process) go to different regions of the image: made at the same time. Returns the
    /// MBR boot code (when BIOS boot is wanted).
    fn make_file_systems(&self, reporter: &Reporter) -> Result<Option<[u8; 440]>> {
        let (root_offset, root_len) = self.disk.layout.root_bytes();
        let step = reporter.step(&format!(
            "making the root file system (ext4, {}), the ESP and GRUB",
            human(root_len)
        ));
        let bootcode = std::thread::scope(|s| -> Result<Option<[u8; 440]>> {
            let boot = s.spawn(|| self.write_boot_pieces());
            let root = ext4::make_root_fs(
                self.raw.path(),
                &RootFsSpec {
                    tree: &self.tree.path,
                    label: ROOT_LABEL,
                    uuid: self.disk.root_uuid,
                    hash_seed: self.disk.ids.uuid("root-fs-hash-seed"),
                    features: self.disk.features,
                    offset: root_offset,
                    size: root_len,
                    source_date_epoch: self.opts.source_date_epoch,
                },
                self.work,
            );
            let bootcode = boot.join().expect("boot thread panicked");
            root?;
            bootcode
        })?;
        step.done();
        Ok(bootcode)
    }

    /// Writes the ESP and core.img into the raw image and returns the MBR boot code (when BIOS
    /// boot is wanted).
    fn write_boot_pieces(&self) -> Result<Option<[u8; 440]>> {
        let (raw, layout, facts) = (self.raw, &self.disk.layout, self.facts);
        let esp_files: Vec<FatFile> = if self.opts.boot.uefi {
            grub::efi_files(facts, self.disk.root_uuid, self.work)?
        } else {
            Vec::new()
        };
        let (esp_offset, esp_len) = layout.esp_bytes();
        fat::write_esp(
            raw.file(),
            esp_offset,
            esp_len,
            self.disk.esp_id,
            self.disk.clock,
            &esp_files,
        )?;
        match (&facts.grub_bios, self.opts.boot.bios) {
            (Some(dir), true) => {
                let (offset, room) = layout.bios_boot_bytes();
                let b = grub::bios_boot(
                    dir,
                    self.disk.root_uuid,
                    layout.bios_boot.0,
                    room,
                    self.work,
                )?;
                raw.file()
                    .write_all_at(&b.core, offset)
                    .context("writing core.img")?;
                Ok(Some(b.mbr_code))
            }
            _ => Ok(None),
        }
    }

    /// Adds fstab and GRUB's configuration to the root file system, then writes the partition
    /// table (with the MBR boot code).
    fn add_boot_config(&self, bootcode: Option<[u8; 440]>, reporter: &Reporter) -> Result<()> {
        let (tree, disk) = (self.tree, self.disk);
        let step = reporter.step("adding fstab and the boot configuration");
        let existing_fstab = std::fs::read_to_string(tree.join("etc/fstab")).unwrap_or_default();
        let esp_text = fat::volume_id_text(disk.esp_id);
        let esp_fsck =
            tree.join("sbin/fsck.vfat").exists() || tree.join("usr/sbin/fsck.vfat").exists();
        let mut added = vec![
            AddedFile {
                path: "/etc/fstab".into(),
                contents: fstab(
                    &existing_fstab,
                    &disk.root_uuid.to_string(),
                    Some(&esp_text),
                    esp_fsck,
                )
                .into_bytes(),
                mode: 0o644,
            },
            AddedFile {
                path: "/boot/grub/grub.cfg".into(),
                contents: grub::grub_cfg(
                    disk.root_uuid,
                    &self.facts.kernel,
                    &self.facts.pretty_name,
                )
                .into_bytes(),
                mode: 0o644,
            },
        ];
        if tree.join("etc/default/grub").is_file() {
            added.push(AddedFile {
                path: "/etc/default/grub.d/50-appliance-console.cfg".into(),
                contents: grub::default_grub_dropin().as_bytes().to_vec(),
                mode: 0o644,
            });
        }
        // The ESP's mount point.
        let dirs = ["/boot/efi"];
        ext4::add_files(
            self.raw.path(),
            disk.layout.root_bytes().0,
            &tree.path,
            &added,
            &dirs,
            self.work,
            self.opts.source_date_epoch,
        )?;
        gpt::write_partition_table(self.raw.file(), &disk.layout, &disk.ids, bootcode)?;
        self.raw
            .file()
            .sync_all()
            .context("flushing the raw image")?;
        step.done();
        Ok(())
    }
}

/// Every export asked for (the raw hashed while the others are made), committed, and their
/// SHA256SUMS.
fn export_and_sum(
    opts: &AssembleOptions,
    raw: PartialFile,
    disk: &DiskPlan,
    facts: &TreeFacts,
    reporter: &Reporter,
) -> Result<Vec<Artifact>> {
    let ctx = ExportContext {
        raw: raw.path(),
        disk_size: disk.size,
        name: &opts.name,
        out_dir: &opts.out,
        mtime: disk.clock,
        vhd_unique_id: *disk.ids.uuid("vhd-unique-id").as_bytes(),
        vmdk_cid: disk.ids.u32("vmdk-cid"),
        ovf_os: export::ova::OvfOs::from_os_id(&facts.os_id),
        threads: opts.threads.max(1),
        reporter,
    };
    let wants_raw = opts.formats.contains(&Format::Raw);
    let (exported, raw_sha) = std::thread::scope(|s| {
        let raw_hash = wants_raw.then(|| s.spawn(|| crate::util::hash::sha256_file(raw.path())));
        let exported = export::export_all(&ctx, &opts.formats);
        let raw_sha = raw_hash
            .map(|h| h.join().expect("hash thread panicked"))
            .transpose();
        (exported, raw_sha)
    });
    let mut outputs = exported?;
    if let Some(sha256) = raw_sha? {
        outputs.push(export::Exported {
            format: Format::Raw,
            file: raw,
            sha256,
        });
    }
    outputs.sort_by_key(|e| e.format);

    let mut artifacts = Vec::new();
    let mut sums = Vec::new();
    for e in outputs {
        let size = e.file.file().metadata()?.len();
        let path = e.file.commit()?;
        let file_name = path
            .file_name()
            .expect("named")
            .to_string_lossy()
            .to_string();
        sums.push((file_name, e.sha256.clone()));
        artifacts.push(Artifact {
            format: e.format.name(),
            path,
            size,
            sha256: e.sha256,
        });
    }
    let sums_file = PartialFile::create(&opts.out.join("SHA256SUMS"))?;
    std::fs::write(sums_file.path(), export::sums::render(&sums)).context("writing SHA256SUMS")?;
    sums_file.commit()?;
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["ubuntu-18.04", "x", "a_b.c"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "a b", "é"] {
            assert_eq!(
                check_name(bad).unwrap_err().to_string(),
                format!("--name '{bad}' is not a valid image name (letters, digits, '.', '_' and '-'; not starting with '.' or '-')")
            );
        }
    }

    #[test]
    fn boot_modes() {
        assert_eq!(
            BootModes::parse("bios,uefi").unwrap(),
            BootModes {
                bios: true,
                uefi: true
            }
        );
        assert_eq!(
            BootModes::parse("uefi").unwrap(),
            BootModes {
                bios: false,
                uefi: true
            }
        );
        assert_eq!(
            BootModes::parse("bios,efi").unwrap_err().to_string(),
            "unknown boot mode 'efi' (expected bios, uefi or bios,uefi)"
        );
    }

    #[test]
    fn sizes_from_the_tree() {
        let small = TreeUsage {
            bytes: 650 * MIB,
            inodes: 25_000,
        };
        let min = minimum_disk_size(small);
        assert!(
            min > 650 * MIB + DiskLayout::overhead() && min < 1100 * MIB,
            "{}",
            human(min)
        );
        assert_eq!(default_disk_size(small), 2 * GIB);
        // A tree of many tiny files is bounded by inodes, not bytes.
        let many = TreeUsage {
            bytes: 100 * MIB,
            inodes: 200_000,
        };
        assert!(minimum_disk_size(many) >= 200_000 * 16384);
    }

    #[test]
    fn fstab_replaces_root_and_esp_only() {
        let old = "# /etc/fstab: static file system information.\nLABEL=cloudimg-rootfs / ext4 defaults 0 1\nLABEL=UEFI /boot/efi vfat umask=0077 0 1\n/swap.img none swap sw 0 0\n";
        let new = fstab(old, "u-1", Some("ABCD-0001"), true);
        assert_eq!(
            new,
            "# /etc/fstab: static file system information.\n/swap.img none swap sw 0 0\n\
             UUID=u-1\t/\text4\tdiscard,errors=remount-ro\t0 1\n\
             UUID=ABCD-0001\t/boot/efi\tvfat\tumask=0077,nofail\t0 1\n"
        );
        let debootstrap = "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n";
        assert_eq!(
            fstab(debootstrap, "u", None, false),
            "UUID=u\t/\text4\tdiscard,errors=remount-ro\t0 1\n"
        );
    }
}
