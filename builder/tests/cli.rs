//! Bad input of every kind gets one clear `error:` line, a non-zero exit and nothing written;
//! Ctrl-C leaves no partial artifact; a tarball works as a root tree.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A tree with a kernel file and nothing else: enough to get past the first checks.
fn kernel_only_tree(dir: &Path) -> std::path::PathBuf {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("boot")).unwrap();
    std::fs::write(t.join("boot/vmlinuz-6.1.0-1-amd64"), b"not really a kernel").unwrap();
    t
}

/// Runs `appliance assemble ARGS --out OUT` and checks: exit code, exactly one `error:` line
/// starting with `want`, and OUT absent (or, when it existed before, as empty as it was).
fn expect_error(args: &[&str], env: &[(&str, &str)], code: i32, want: &str) {
    let dir = scratch("cli");
    let out = dir.path().join("out");
    let mut cmd = appliance();
    cmd.arg("assemble").args(args).arg("--out").arg(&out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    assert_one_error(&mut cmd, code, want);
    assert!(!out.exists(), "{args:?} left {:?}", dir_names(&out));
}

/// Arguments, environment, expected exit code, expected start of the error line.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], i32, &'a str);

#[test]
fn bad_arguments_and_trees() {
    let dir = scratch("cli-trees");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let kernel_only = kernel_only_tree(dir.path());
    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let (empty, kernel_only, garbage) = (
        empty.to_str().unwrap(),
        kernel_only.to_str().unwrap(),
        garbage.to_str().unwrap(),
    );
    let cases: &[Case] = &[
        (&["--rootfs", "/nonexistent/tree"], &[], 1, "error: root tree /nonexistent/tree does not exist"),
        (&["--rootfs", empty], &[], 1, &format!("error: the tree has no kernel: {empty}/boot is missing")),
        (&["--rootfs", kernel_only, "--boot", "bios"], &[], 1,
            "error: --boot bios needs GRUB's i386-pc modules in the tree (/usr/lib/grub/i386-pc, package grub-pc-bin)"),
        (&["--rootfs", kernel_only, "--boot", "uefi"], &[], 1,
            "error: --boot uefi needs shim and signed GRUB (shim-signed, grub-efi-amd64-signed) or GRUB's x86_64-efi modules (grub-efi-amd64-bin) in the tree"),
        (&["--rootfs", garbage], &[], 1, &format!("error: unpacking {garbage}: ")),
        (&["--rootfs", empty, "--formats", "raw,iso"], &[], 2,
            "error: invalid value 'raw,iso' for '--formats <LIST>': unknown format 'iso' (expected any of raw, qcow2, vmdk, ova, gcp, vhd, raw.zst, raw.xz)"),
        (&["--rootfs", empty, "--size", "10GB"], &[], 2,
            "error: invalid value '10GB' for '--size <SIZE>': '10GB' has an unknown unit 'GB' (use K, M, G, T or KiB, MiB, GiB, TiB)"),
        (&["--rootfs", empty, "--boot", "efi"], &[], 2,
            "error: invalid value 'efi' for '--boot <MODES>': unknown boot mode 'efi' (expected bios, uefi or bios,uefi)"),
        (&["--rootfs", empty, "--ext4-features", "newest"], &[], 2,
            "error: invalid value 'newest' for '--ext4-features <SET>': unknown ext4 feature set 'newest' (expected auto, compat or current)"),
        (&["--rootfs", empty, "--name", "../x"], &[], 1,
            "error: --name '../x' is not a valid image name (letters, digits, '.', '_' and '-'; not starting with '.' or '-')"),
        (&["--rootfs", empty], &[("SOURCE_DATE_EPOCH", "yesterday")], 1,
            "error: SOURCE_DATE_EPOCH 'yesterday' is not a whole number of seconds"),
        (&["--rootfs", empty], &[("PATH", "/nonexistent")], 1,
            "error: mke2fs not found on PATH: install it with `apt-get install e2fsprogs`"),
        (&["--rootfs", kernel_only], &[("PATH", "/usr/sbin:/sbin")], 1,
            "error: grub-mkimage not found on PATH: install it with `apt-get install grub-common`"),
        (&["--rootfs", kernel_only, "--boot", "uefi", "--formats", "qcow2"], &[("PATH", "/usr/sbin:/sbin")], 1,
            "error: qemu-img not found on PATH: install it with `apt-get install qemu-utils`"),
        (&["--rootfs"], &[], 2, "error: a value is required for '--rootfs <DIR|TARBALL>' but none was supplied"),
    ];
    for (args, env, code, want) in cases {
        expect_error(args, env, *code, want);
    }
}

#[test]
fn help_explains_the_command() {
    let out = run_ok(appliance().args(["assemble", "--help"]));
    let text = stdout(&out);
    for needle in [
        "--rootfs <DIR|TARBALL>",
        "--formats <LIST>",
        "raw.zst",
        "SOURCE_DATE_EPOCH",
        "partition 14 BIOS boot",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn size_too_small_for_the_tree() {
    let tree = test_tree();
    expect_error(
        &["--rootfs", tree.to_str().unwrap(), "--size", "300M"],
        &[],
        1,
        "error: --size 300 MiB is too small for this tree (",
    );
}

/// Interrupts a run when `ready` first holds for its output directory, then checks that the
/// run stopped with 130 and left nothing, and that no child it started is still running.
fn interrupt_when(label: &str, ready: impl Fn(&[String]) -> bool) {
    let dir = scratch("ctrl-c");
    let out = dir.path().join("out");
    let mut child = appliance()
        .args([
            "assemble",
            "--name",
            "t",
            "--formats",
            "raw,qcow2,vmdk,ova,gcp,vhd,raw.zst,raw.xz",
            "--rootfs",
        ])
        .arg(test_tree())
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !ready(&dir_names(&out)) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{label}: never got ready: {:?}",
            dir_names(&out)
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "{label}: finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = dir_names(&out);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "{label}: {err}");
    assert!(
        err.contains("error: interrupted; no partial artifact was left behind"),
        "{label}: {err}"
    );
    assert_eq!(
        dir_names(&out),
        Vec::<String>::new(),
        "{label}: left behind (had {seen:?})"
    );
    std::thread::sleep(Duration::from_millis(500));
    let ps = stdout(&run_ok(tool("ps").args(["-eo", "args"])));
    assert!(
        !ps.contains(out.to_str().unwrap()),
        "{label}: a child still runs:\n{ps}"
    );
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn ctrl_c_leaves_nothing_behind() {
    // While mke2fs writes the root file system (a child process) ...
    interrupt_when("during mke2fs", |names| {
        names.iter().any(|n| n == ".t.raw.partial")
    });
    // ... and while the exports run in parallel.
    interrupt_when("during exports", |names| {
        names.iter().any(|n| n == ".t.raw.xz.partial")
    });
}

#[test]
#[ignore = "needs APPLIANCE_TEST_TREE; run by scripts/test"]
fn tarball_root_keeps_owners_modes_and_devices() {
    let tree = test_tree();
    let dir = scratch("tarball");
    let tarball = dir.path().join("root.tar.zst");
    run_ok(tool("sh").arg("-c").arg(format!(
        "tar --xattrs --numeric-owner -C {} -cf - . | zstd -q -T0 -o {}",
        tree.display(),
        tarball.display()
    )));
    let out = dir.path().join("out");
    run_ok(
        appliance()
            .args([
                "assemble",
                "--name",
                "t",
                "--formats",
                "raw",
                "--boot",
                "bios",
                "--rootfs",
            ])
            .arg(&tarball)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(
        dir_names(&out),
        ["SHA256SUMS", "t.raw"],
        "work directory removed"
    );
    let raw = out.join("t.raw");
    let dev = format!("{}?offset={}", raw.display(), partition_offset(&raw, 1));
    run_ok(tool("e2fsck").arg("-fn").arg(&dev));
    let stat = |p: &str| {
        stdout(&run_ok(
            tool("debugfs").arg("-R").arg(format!("stat {p}")).arg(&dev),
        ))
    };
    let passwd = stat("/usr/bin/passwd");
    assert!(
        passwd.contains("Mode:  04755") && passwd.contains("User:     0"),
        "{passwd}"
    );
    // A file owned by a system group keeps its group (shadow, gid 42 on Debian).
    let shadow_gid = std::fs::metadata(tree.join("etc/shadow")).unwrap().gid();
    assert!(
        stat("/etc/shadow").contains(&format!("Group:    {shadow_gid}")),
        "shadow's group"
    );
    let null = stat("/dev/null");
    assert!(
        null.contains("Type: character special")
            && null.contains("Device major/minor number: 01:03"),
        "{null}"
    );
    let count = |p: &Path| std::fs::read_dir(p).unwrap().count();
    let listed = stdout(&run_ok(
        tool("debugfs").arg("-R").arg("ls -p /usr/bin").arg(&dev),
    ));
    assert_eq!(
        listed.lines().filter(|l| !l.trim().is_empty()).count() - 2,
        count(&tree.join("usr/bin")),
        "all of /usr/bin"
    );
}

#[test]
fn seed_volume_and_its_bad_inputs() {
    let dir = scratch("seed");
    let ud = dir.path().join("user-data");
    std::fs::write(&ud, "#cloud-config\nhostname: seeded\n").unwrap();
    let out = dir.path().join("seed.img");
    run_ok(
        appliance()
            .arg("seed")
            .arg("--user-data")
            .arg(&ud)
            .arg("-o")
            .arg(&out),
    );
    let blkid = stdout(&run_ok(tool("blkid").arg("-p").arg(&out)));
    assert!(
        blkid.contains("LABEL=\"CIDATA\"") && blkid.contains("TYPE=\"vfat\""),
        "{blkid}"
    );
    run_ok(tool("fsck.fat").arg("-n").arg(&out));
    let back = run_ok(tool("mtype").arg("-i").arg(&out).arg("::/user-data")).stdout;
    assert_eq!(back, std::fs::read(&ud).unwrap());

    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "hostname: seeded\n").unwrap();
    let no_id = dir.path().join("meta-data");
    std::fs::write(&no_id, "local-hostname: x\n").unwrap();
    let (ud, plain, no_id) = (
        ud.to_str().unwrap(),
        plain.to_str().unwrap(),
        no_id.to_str().unwrap(),
    );
    let cases: &[(&[&str], &str)] = &[
        (&["--user-data", "/nonexistent/ud"], "error: reading the user-data /nonexistent/ud: No such file or directory"),
        (&["--user-data", plain], &format!("error: user-data {plain} starts with \"hostname: seeded\", which cloud-init ignores")),
        (&["--user-data", ud, "--meta-data", no_id], &format!("error: meta-data {no_id} has no instance-id")),
    ];
    for (args, want) in cases {
        let bad = dir.path().join("bad.img");
        assert_one_error(
            appliance().arg("seed").args(*args).arg("-o").arg(&bad),
            1,
            want,
        );
        assert!(
            !bad.exists() && dir_names(dir.path()).iter().all(|n| !n.contains("partial")),
            "{:?}",
            dir_names(dir.path())
        );
    }
}
