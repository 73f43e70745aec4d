//! Boot tests, under QEMU with TCG unless KVM is proven to work (see `appliance::qemu`):
//! - `appliance boot` with SeaBIOS and `--user-data`: the image reaches userspace and cloud-init
//!   applies the host name from the seed made for it;
//! - OVMF with Secure Boot enforcing (Microsoft keys enrolled): shim, signed GRUB and the
//!   signed kernel must all verify;
//! - a tree without shim: GRUB's EFI image from grub-mkimage starts the kernel.
//!
//! Userspace is proven by a line a systemd unit of the test tree writes to the serial port,
//! naming the root device, how the firmware booted and the host name.

mod common;

use appliance::qemu::Firmware;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const MARKER: &str = "APPLIANCE-TEST-USERSPACE";

/// The qcow2 of the test tree, assembled once for this file's tests.
fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &IMAGE
        .get_or_init(|| {
            let dir = scratch("boot");
            run_ok(
                appliance()
                    .args([
                        "assemble",
                        "--name",
                        "boot",
                        "--formats",
                        "qcow2",
                        "--rootfs",
                    ])
                    .arg(test_tree())
                    .arg("--out")
                    .arg(dir.path()),
            );
            let p = dir.path().join("boot.qcow2");
            (dir, p)
        })
        .1
}

/// Boots `image` with the library (as `appliance boot` does) and returns the line with
/// `needle` from the serial console.
fn boot_and_read(image: &Path, firmware: Firmware, needle: &str) -> String {
    TestVm::start(image, firmware, None, Vec::new(), true).wait_for(needle)
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE and QEMU; run by scripts/test"]
fn appliance_boot_with_seabios_and_cloud_init_reads_the_user_data() {
    let dir = scratch("seed-boot");
    let ud = dir.path().join("user-data");
    std::fs::write(&ud, "#cloud-config\nhostname: seeded-by-appliance\n").unwrap();
    let log = dir.path().join("serial.log");
    let out = run_ok(
        appliance()
            .arg("boot")
            .arg(image())
            .arg("--user-data")
            .arg(&ud)
            .args([
                "--memory",
                "1024",
                "--cpus",
                "1",
                "--timeout",
                "420",
                "--expect",
                MARKER,
            ])
            .arg("--serial-log")
            .arg(&log),
    );
    let line = stdout(&out);
    let line = line.trim_end();
    assert!(line.starts_with(MARKER), "{line}");
    assert!(line.contains("root=/dev/vda1 fstype=ext4 efi=no"), "{line}");
    assert!(line.ends_with(" hostname=seeded-by-appliance"), "{line}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("Linux version"),
        "the log has the whole console"
    );
    // The image was booted as a snapshot: the artifact is unchanged.
    let check = run_ok(tool("qemu-img").args(["check", "-f", "qcow2"]).arg(image()));
    assert!(stdout(&check).contains("No errors were found"));
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE and QEMU; run by scripts/test"]
fn boots_with_ovmf_secure_boot() {
    let line = boot_and_read(image(), Firmware::Uefi { secure_boot: true }, MARKER);
    assert!(
        line.contains("root=/dev/vda1 fstype=ext4 efi=yes secureboot=1"),
        "{line}"
    );
    // No seed: the tree's own host name.
    assert!(line.ends_with(" hostname=debian12-test"), "{line}");
}

/// A tree without shim: a kernel, its initramfs and GRUB's x86_64-efi modules (from the host,
/// as a tree would have them from grub-efi-amd64-bin). Assembly must build GRUB's EFI image
/// itself, and that image must find grub.cfg by UUID and start the kernel.
#[test]
#[ignore = "needs APPLIANCE_TEST_TREE and QEMU; run by scripts/test"]
fn unsigned_grub_efi_image_starts_the_kernel() {
    let tree = test_tree();
    let dir = scratch("no-shim");
    let small = dir.path().join("tree");
    std::fs::create_dir_all(small.join("boot")).unwrap();
    std::fs::create_dir_all(small.join("usr/lib/grub")).unwrap();
    for entry in std::fs::read_dir(tree.join("boot")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("vmlinuz-") || name.starts_with("initrd.img-") {
            std::fs::copy(&p, small.join("boot").join(&name)).unwrap();
        }
    }
    run_ok(
        tool("cp")
            .arg("-a")
            .arg("/usr/lib/grub/x86_64-efi")
            .arg(small.join("usr/lib/grub/")),
    );
    let out = dir.path().join("out");
    run_ok(
        appliance()
            .args([
                "assemble",
                "--name",
                "noshim",
                "--boot",
                "uefi",
                "--formats",
                "qcow2",
                "--rootfs",
            ])
            .arg(&small)
            .arg("--out")
            .arg(&out),
    );
    // The kernel's command line on ttyS0 means GRUB read grub.cfg from the root and booted it.
    let line = boot_and_read(
        &out.join("noshim.qcow2"),
        Firmware::Uefi { secure_boot: false },
        "Kernel command line:",
    );
    assert!(
        line.contains("root=UUID=") && line.contains("console=ttyS0"),
        "{line}"
    );
}

#[test]
fn boot_refuses_bad_input() {
    let dir = scratch("boot-bad");
    let img = dir.path().join("disk.iso");
    std::fs::write(&img, b"x").unwrap();
    let cases: &[(&[&str], i32, String)] = &[
        (&["/nonexistent/disk.qcow2"], 1, "error: image /nonexistent/disk.qcow2 does not exist".into()),
        (&[img.to_str().unwrap()], 1, format!("error: {} is not an image QEMU boots here (.qcow2, .raw, .img, .vmdk or .vhd)", img.display())),
        (&["x.qcow2", "--forward", "22"], 2, "error: invalid value '22' for '--forward <HOSTPORT:GUESTPORT>': '22' is not HOSTPORT:GUESTPORT".into()),
        (&["x.qcow2", "--seed", "s.img", "--user-data", "u"], 2, "error: the argument '--seed <FILE>' cannot be used with '--user-data <FILE>'".into()),
        (&["x.qcow2", "--accel", "hvf"], 2, "error: invalid value 'hvf' for '--accel <ACCEL>'".into()),
    ];
    for (args, code, want) in cases {
        assert_one_error(appliance().arg("boot").args(*args), *code, want);
    }
}
