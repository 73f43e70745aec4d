//! The product's Ubuntu 18.04 base (issue 15, point 1, and the boot checks of point 4):
//! builder/tests/profiles/bionic-base.toml, the product's `[base]` (a debootstrap of bionic from
//! Ubuntu's archive, upgraded from bionic-updates and bionic-security) with only the overlays
//! that need no vendor payload (`base`, `ufw`, `firstboot`), is built with `appliance build`
//! once and then:
//!
//! - read with debugfs (e2fsprogs, not our code): /etc/os-release says Ubuntu 18.04, and the
//!   firstboot binary in the image needs no glibc symbol newer than 2.27 (scripts/check-glibc,
//!   objdump);
//! - booted with `appliance boot --user-data` under SeaBIOS and OVMF: cloud-init runs the
//!   NoCloud seed and appliance-firstboot applies it, as its one line on the serial console
//!   says. (OVMF with Secure Boot enforcing, where bionic's own signed shim, GRUB and kernel
//!   must verify, is product.rs's boot of the whole product on the same base.)
//!
//! The debootstrapped base is cached by its parameters (in $APPLIANCE_CACHE), so only the
//! first build downloads from Ubuntu's archive. Every test's name starts with `bionic_base_`,
//! so `cargo test -- --include-ignored --skip bionic_base_` leaves them all out.

mod common;

use common::ubuntu_base::{Gve, UbuntuBase};
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const DNS: &str = "bionic.example.test";

/// The profile, checked to have the product's very `[base]` table.
fn profile() -> PathBuf {
    let p = repo().join("builder/tests/profiles/bionic-base.toml");
    let table = |path: &Path| {
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        v["base"].clone()
    };
    assert_eq!(
        table(&p),
        table(&repo().join("profiles/rocketchat-jitsi-bionic.toml")),
        "the test profile's [base] is not the product's"
    );
    p
}

const BASE: UbuntuBase = UbuntuBase {
    name: "bionic-base",
    profile: "builder/tests/profiles/bionic-base.toml",
    dns: DNS,
    kernel: "4.15.0-",
    timeout: 600,
    modules: "/lib/modules",
    module_endings: &["ko"],
    gve: Gve::NoDriver,
};

/// The built qcow2 (once for this file's tests).
fn image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        profile();
        BASE.build()
    })
}

/// The image's root file system (once for this file's tests).
fn root() -> &'static ImageReader {
    static ROOT: OnceLock<ImageReader> = OnceLock::new();
    ROOT.get_or_init(|| ImageReader::open(image()))
}

fn debugfs(request: &str) -> String {
    root().debugfs(request)
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn bionic_base_is_ubuntu_18_04() {
    // /etc/os-release is Ubuntu's link to /usr/lib/os-release.
    let link = debugfs("stat /etc/os-release");
    assert!(
        link.contains("Fast link dest: \"../usr/lib/os-release\""),
        "{link}"
    );
    let os = debugfs("cat /usr/lib/os-release");
    assert!(os.lines().any(|l| l == "ID=ubuntu"), "{os}");
    assert!(os.lines().any(|l| l == "VERSION_ID=\"18.04\""), "{os}");
    assert!(os.lines().any(|l| l == "VERSION_CODENAME=bionic"), "{os}");
    // Upgraded from the -updates pocket: the release's cloud-init was 18.2.
    let status = debugfs("cat /var/lib/dpkg/status");
    let version = |pkg: &str| {
        status
            .split("\n\n")
            .find(|s| s.lines().any(|l| l == format!("Package: {pkg}")))
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Version: ")))
            .unwrap_or_else(|| panic!("{pkg} is not installed"))
            .to_string()
    };
    let cloud_init = version("cloud-init");
    assert!(cloud_init.starts_with("23.1"), "cloud-init {cloud_init}");
    for pkg in [
        "linux-image-virtual",
        "shim-signed",
        "grub-efi-amd64-signed",
        "grub-pc-bin",
        "cloud-guest-utils",
        "openssh-server",
        "ufw",
    ] {
        version(pkg);
    }
}

/// What makes the image a cloud image, read from the image: the kernel's drivers for the clouds'
/// disks and NICs, cloud-init's datasources and its `ubuntu` default user. Not gVNIC: gve came
/// with Linux 5.3, bionic's 4.15 has no driver for it (profiles/README.md).
#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn bionic_base_has_what_clouds_need() {
    BASE.assert_cloud_ready(root());
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn bionic_base_firstboot_binary_needs_at_most_glibc_2_27() {
    root().assert_firstboot_needs_at_most_glibc_2_27();
}

/// Boots the image with a NoCloud seed and returns the console once appliance-firstboot has
/// said what it applied, with the seconds it took from QEMU's start.
/// cloud-init 23.1 (bionic-updates) runs the seed: the release pocket's never ran, and without
/// `locales` cloud-config failed.
fn boot_to_configured(firmware: &[&str], tag: &str) -> String {
    BASE.boot_to_configured(image(), firmware, tag, "23.1")
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn bionic_base_boots_to_configured_under_seabios() {
    let console = boot_to_configured(&[], "seabios");
    assert!(!console.contains("Secure boot enabled"), "{console}");
}

#[test]
#[ignore = "needs Ubuntu's archive (or a cached base), QEMU and debugfs; run by scripts/test"]
fn bionic_base_boots_to_configured_under_ovmf() {
    let console = boot_to_configured(&["--uefi"], "ovmf");
    assert!(console.contains("efi: EFI v"), "{console}");
}
