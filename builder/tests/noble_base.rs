//! The Ubuntu 24.04 base of the noble sibling (issue 18, its OS half): builder/tests/profiles/
//! noble-base.toml, profiles/rocketchat-jitsi-noble.toml's `[base]` and `[disk]` (a debootstrap
//! of noble from Ubuntu's archive with debootstrap's `gutsy` script, upgraded from noble-updates
//! and noble-security) with only the overlays that need no vendor payload (`base`, `ufw`,
//! `firstboot`), is built with `appliance build` once and then:
//!
//! - read with debugfs (e2fsprogs, not our code): /etc/os-release says Ubuntu 24.04, the
//!   packages that make a cloud image are there (from -updates where it has them), the kernel's
//!   modules cover the clouds' disks and NICs, the root file system has the ext4 features of
//!   noble's own mke2fs, and the firstboot binary needs no glibc symbol newer than
//!   the image's own glibc (scripts/check-glibc, objdump);
//! - booted with `appliance boot --user-data` under SeaBIOS, OVMF, and OVMF with Secure Boot
//!   enforcing (noble's own signed shim, GRUB and kernel must verify): cloud-init runs the
//!   NoCloud seed and appliance-firstboot applies it, as its one line on the serial console
//!   says.
//!
//! The debootstrapped base is cached by its parameters (in $APPLIANCE_CACHE), so only the
//! first build downloads from Ubuntu's archive. Every test's name starts with `noble_base_`,
//! so `cargo test -- --include-ignored --skip noble_base_` leaves them all out.

mod common;

use common::ubuntu_base::{Gve, UbuntuBase};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const DNS: &str = "noble.example.test";
const PRODUCT: &str = "profiles/rocketchat-jitsi-noble.toml";
const PROFILE: &str = "builder/tests/profiles/noble-base.toml";

fn table(path: &Path, key: &str) -> toml::Value {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.get(key)
        .unwrap_or_else(|| panic!("no [{key}] in {}", path.display()))
        .clone()
}

/// The test profile builds what the product would: its very `[base]` and `[disk]`.
#[test]
fn noble_base_profile_has_the_products_base_and_disk() {
    let (test, product) = (repo().join(PROFILE), repo().join(PRODUCT));
    for key in ["base", "disk"] {
        assert_eq!(
            table(&test, key),
            table(&product, key),
            "the test profile's [{key}] is not the noble product's"
        );
    }
    // Noble itself, through the script every debootstrap has (Debian 12's has no `noble`).
    let base = table(&test, "base");
    assert_eq!(base["suite"].as_str(), Some("noble"));
    assert_eq!(base["script"].as_str(), Some("gutsy"));
}

/// The built qcow2 (once for this file's tests).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| BASE.build())
}

/// The image's root file system (once for this file's tests).
fn root() -> &'static ImageReader {
    static ROOT: OnceLock<ImageReader> = OnceLock::new();
    ROOT.get_or_init(|| ImageReader::open(image()))
}

fn debugfs(request: &str) -> String {
    root().debugfs(request)
}

/// The installed version of `pkg`, from the image's dpkg database.
fn version(pkg: &str) -> String {
    static STATUS: OnceLock<String> = OnceLock::new();
    let status = STATUS.get_or_init(|| debugfs("cat /var/lib/dpkg/status"));
    status
        .split("\n\n")
        .find(|s| {
            s.lines().any(|l| l == format!("Package: {pkg}"))
                && s.lines().any(|l| l == "Status: install ok installed")
        })
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Version: ")))
        .unwrap_or_else(|| panic!("{pkg} is not installed"))
        .to_string()
}

/// `version` without its epoch and Debian revision: "1:9.6p1-3ubuntu13.20" → "9.6p1".
fn upstream(version: &str) -> &str {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    v.split_once('-').map_or(v, |(u, _)| u)
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_is_ubuntu_24_04() {
    // /etc/os-release is Ubuntu's link to /usr/lib/os-release.
    let link = debugfs("stat /etc/os-release");
    assert!(
        link.contains("Fast link dest: \"../usr/lib/os-release\""),
        "{link}"
    );
    let os = debugfs("cat /usr/lib/os-release");
    assert!(os.lines().any(|l| l == "ID=ubuntu"), "{os}");
    assert!(os.lines().any(|l| l == "VERSION_ID=\"24.04\""), "{os}");
    assert!(os.lines().any(|l| l == "VERSION_CODENAME=noble"), "{os}");
    // Merged /usr, as every Ubuntu since 21.04 (debootstrap's gutsy script does it for noble).
    let bin = debugfs("stat /bin");
    assert!(bin.contains("Fast link dest: \"usr/bin\""), "{bin}");
    // The versions firstboot must work with (issue 18, point 3) and that the boot relies on.
    // Upgraded from the -updates pocket: noble's release pocket has cloud-init 24.1.3.
    let cloud_init = version("cloud-init");
    assert!(
        cloud_init.contains("~24.04."),
        "cloud-init {cloud_init} is not from noble-updates"
    );
    let systemd = version("systemd");
    assert!(systemd.starts_with("255."), "systemd {systemd}");
    let openssl = version("libssl3t64");
    assert!(openssl.starts_with("3."), "libssl3t64 {openssl}");
    let grub = version("grub-pc-bin");
    assert!(grub.starts_with("2.12-"), "grub-pc-bin {grub}");
    let signed = version("grub-efi-amd64-signed");
    assert!(signed.contains("+2.12-"), "grub-efi-amd64-signed {signed}");
    let shim = version("shim-signed");
    assert!(shim.contains("+15."), "shim-signed {shim}");
    let kernel = version("linux-image-virtual");
    assert!(kernel.starts_with("6.8.0-"), "linux-image-virtual {kernel}");
    for pkg in [
        "cloud-guest-utils",
        "openssh-server",
        "netplan.io",
        "systemd-resolved",
        "initramfs-tools",
        "ufw",
    ] {
        version(pkg);
    }
}

/// Names resolve through systemd-resolved, as on Ubuntu's own images: /etc/resolv.conf is
/// the link systemd-resolved's postinst made to its stub (127.0.0.53, which firstboot's ACME
/// client reads), not the build host's file emptied by scrub; the copy of the build host's
/// file that postinst kept is gone.
#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_resolves_through_systemd_resolved() {
    let link = debugfs("stat /etc/resolv.conf");
    assert!(
        link.contains("Fast link dest: \"../run/systemd/resolve/stub-resolv.conf\""),
        "{link}"
    );
    let etc = debugfs("ls /etc");
    assert!(!etc.contains(".resolv.conf.systemd-resolved.bak"), "{etc}");
}

/// The profile's `[disk] ext4_features = "compat"`: the root has exactly the ext4 features
/// noble's own mke2fs gives a new file system (its /etc/mke2fs.conf, read from the image), so
/// neither `metadata_csum_seed` nor `orphan_file`, which `auto` would add for e2fsprogs 1.47 and
/// GRUB 2.12 but which tools older than 1.47 cannot check.
#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_root_has_the_ext4_features_of_noble_own_mke2fs() {
    let stats = debugfs("stats");
    let features: Vec<&str> = stats
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .unwrap_or_else(|| panic!("no features in {stats}"))
        .split_whitespace()
        .collect();
    for f in ["metadata_csum_seed", "orphan_file"] {
        assert!(!features.contains(&f), "{f} among {features:?}");
    }
    // mke2fs.conf: `[defaults] base_features = a,b,...` and `ext4 = { features = c,d,... }`.
    let conf = debugfs("cat /etc/mke2fs.conf");
    let list = |key: &str| -> Vec<String> {
        conf.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .and_then(|l| l.trim_start().strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in\n{conf}"))
            .split(',')
            .map(|f| f.trim().to_string())
            .collect()
    };
    let ext4 = list("features");
    assert!(!ext4.iter().any(|f| f == "orphan_file"), "{ext4:?}");
    for f in list("base_features").iter().chain(&ext4) {
        // mke2fs.conf's `^feature` turns one off.
        if !f.starts_with('^') {
            assert!(features.contains(&f.as_str()), "{f} not among {features:?}");
        }
    }
}

/// What makes the image a cloud image, read from the image: the kernel's drivers for the clouds'
/// disks and NICs, cloud-init's datasources and its `ubuntu` default user. Not gVNIC: the
/// kernel builds gve (modules.order lists it) but it ships in linux-modules-extra, which the
/// virtual flavour leaves out (profiles/README.md).
#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_has_what_clouds_need() {
    BASE.assert_cloud_ready(root());
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_firstboot_binary_needs_no_newer_glibc_than_the_images() {
    let libc = version("libc6");
    let glibc = upstream(&libc);
    assert!(glibc.starts_with("2.39"), "libc6 {libc}");
    root().assert_firstboot_needs_at_most_glibc(glibc);
}

const BASE: UbuntuBase = UbuntuBase {
    name: "noble-base",
    profile: PROFILE,
    dns: DNS,
    kernel: "6.8.0-",
    timeout: 900,
    // Merged /usr: the modules are in /usr/lib/modules.
    modules: "/usr/lib/modules",
    // noble's modules are zstd-compressed (name.ko.zst); built-in ones are name.ko.
    module_endings: &["ko", "ko.zst"],
    gve: Gve::BuiltNotInstalled,
};

/// Boots the image under `firmware` until firstboot has applied the seed, which noble-updates'
/// cloud-init ran.
fn boot_to_configured(firmware: &[&str], tag: &str) -> String {
    let cloud_init = upstream(&version("cloud-init")).to_string();
    BASE.boot_to_configured(image(), firmware, tag, &cloud_init)
}

/// Whether the guest's kernel said Secure Boot was on (noble's 6.8 logs "secureboot: Secure
/// boot enabled" under OVMF with Secure Boot enforcing).
fn secure_boot_said(console: &str) -> bool {
    console.contains("Secure boot enabled")
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_boots_to_configured_under_seabios() {
    let console = boot_to_configured(&[], "seabios");
    assert!(!console.contains("efi: EFI v"), "{console}");
    assert!(!secure_boot_said(&console), "{console}");
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_boots_to_configured_under_ovmf() {
    let console = boot_to_configured(&["--uefi"], "ovmf");
    assert!(console.contains("efi: EFI v"), "{console}");
    assert!(!secure_boot_said(&console), "{console}");
}

/// noble's own chain: Microsoft-signed shim 15.8, Canonical-signed GRUB 2.12 and kernel, with
/// OVMF enforcing Secure Boot with Microsoft's keys; the kernel then locks itself down.
#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn noble_base_boots_to_configured_under_ovmf_with_secure_boot() {
    let console = boot_to_configured(&["--uefi", "--secure-boot"], "secure-boot");
    assert!(console.contains("efi: EFI v"), "{console}");
    assert!(secure_boot_said(&console), "{console}");
    assert!(
        console.contains("Kernel is locked down from EFI Secure Boot mode"),
        "{console}"
    );
}
