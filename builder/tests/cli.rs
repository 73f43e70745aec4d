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

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn profiles_are_found_by_name_from_any_directory() {
    let dir = scratch("cli-anywhere");
    let elsewhere = dir.path().join("elsewhere");
    let mine = dir.path().join("mine");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(&mine).unwrap();
    let written = debian12_profile(&mine, "[disk]\nboot = [\"bios\"]\n");
    std::fs::rename(&written, mine.join("own.toml")).unwrap();
    let source_profiles = repo().join("profiles");
    let in_elsewhere = |cmd: &mut std::process::Command| {
        cmd.current_dir(&elsewhere)
            .env("APPLIANCE_PROFILES", &mine)
            .env_remove("APPLIANCE_CACHE");
    };

    // `profiles`: $APPLIANCE_PROFILES, then the source tree's profiles.
    let mut c = appliance();
    c.args(["profiles", "--json"]);
    in_elsewhere(&mut c);
    let listed = json(&run_ok(&mut c));
    let by_name = |n: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap_or_else(|| panic!("{n} not in {listed}"))
            .clone()
    };
    assert_eq!(
        by_name("own")["path"],
        mine.join("own.toml").to_str().unwrap()
    );
    assert_eq!(
        by_name("debian12-test")["path"],
        source_profiles.join("debian12-test.toml").to_str().unwrap()
    );
    assert!(by_name("rocketchat-jitsi-bionic")["description"]
        .as_str()
        .unwrap()
        .contains("Ubuntu 18.04"));

    // `plan NAME`: resolved there, outputs under a relative -o, paths without `..`.
    for (name, file) in [
        ("own", mine.join("own.toml")),
        ("debian12-test", source_profiles.join("debian12-test.toml")),
    ] {
        let mut c = appliance();
        c.args(["plan", name, "--json", "-o", "out"]);
        in_elsewhere(&mut c);
        let plan = json(&run_ok(&mut c));
        assert_eq!(plan["profile_file"], file.to_str().unwrap());
        assert_eq!(plan["outputs"][0], "out/debian12-test.qcow2");
        let steps: Vec<&str> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert!(
            steps
                .iter()
                .all(|s| !s.contains("profiles/../") && !s.contains("firstboot/../")),
            "{steps:#?}"
        );
        // The static firstboot binary is made by the build itself, first, with its log.
        assert_eq!(
            steps[0],
            format!(
                "make {root}/target/x86_64-unknown-linux-gnu/release/appliance-firstboot (late file /usr/local/sbin/appliance-firstboot, overlay firstboot): `../../scripts/build-firstboot` in {root}/overlays/firstboot; log out/logs/00-make-appliance-firstboot.log",
                root = repo().display()
            )
        );
    }

    // ./profiles comes first.
    let local = elsewhere.join("profiles");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::copy(mine.join("own.toml"), local.join("debian12-test.toml")).unwrap();
    let mut c = appliance();
    c.args(["plan", "debian12-test", "--json"]);
    in_elsewhere(&mut c);
    assert_eq!(
        json(&run_ok(&mut c))["profile_file"],
        "profiles/debian12-test.toml"
    );

    // An unknown name: where it looked and what it found, on one line.
    for sub in ["plan", "build", "fetch"] {
        let mut c = appliance();
        c.args([sub, "nope", "-o", "x"]);
        in_elsewhere(&mut c);
        assert_one_error(
            &mut c,
            1,
            &format!(
                "error: no profile 'nope': looked for nope.toml in profiles, {}, {}, /usr/share/appliance/profiles; found debian12-test, own, rocketchat-jitsi-bionic, rocketchat-jitsi-noble",
                mine.display(),
                source_profiles.display()
            ),
        );
        assert!(!elsewhere.join("x").exists());
    }
}

/// A profile with a local base and one overlay whose late file is made by `make`.
fn make_profile(dir: &Path, make: &str) -> std::path::PathBuf {
    let ov = dir.join("overlays/mk");
    std::fs::create_dir_all(&ov).unwrap();
    std::fs::write(
        ov.join("overlay.toml"),
        format!("[variables]\nmade = \"made.bin\"\n[late.\"/usr/bin/made\"]\nsource = \"{{{{made}}}}\"\nmake = {make}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("profiles")).unwrap();
    let p = dir.join("profiles/mk.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"mk\"\noverlays = [\"mk\"]\n[base]\nkind = \"local\"\npath = \"{}\"\n",
            dir.join("empty-tree").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("empty-tree")).unwrap();
    p
}

#[test]
fn late_files_are_made_by_the_build_with_a_log_and_quiet_and_verbose_change_the_output() {
    let dir = scratch("cli-make");
    let good = make_profile(
        &dir.path().join("good"),
        r#"["sh", "-c", "echo compiling; echo ELF > made.bin"]"#,
    );
    let run = |flags: &[&str], profile: &Path, out: &str| {
        let mut c = appliance();
        c.args(flags)
            .arg("build")
            .arg(profile)
            .arg("-o")
            .arg(dir.path().join(out))
            .env("APPLIANCE_CACHE", dir.path().join("cache"));
        c.output().unwrap()
    };
    // The build makes the late file first, then stops at the empty base (no /usr/sbin).
    let normal = run(&[], &good, "n");
    let made = dir.path().join("good/overlays/mk/made.bin");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "ELF\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("n/logs/00-make-made.log")).unwrap(),
        "compiling\n"
    );
    let err = stderr_of(&normal);
    assert!(
        err.contains("==> making /usr/bin/made (overlay mk)"),
        "{err}"
    );
    assert!(err.contains("] building profile mk"), "{err}");
    assert!(!err.contains("+ sh -c"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("policy-rc.d"), "{err}");

    // -q: the error line only; -v: also the commands run.
    std::fs::remove_file(&made).unwrap();
    let quiet = run(&["-q"], &good, "q");
    assert!(made.exists());
    assert_eq!(stderr_of(&quiet).lines().collect::<Vec<_>>(), errors);
    let verbose = run(&["--verbose"], &good, "v");
    let err = stderr_of(&verbose);
    assert!(
        err.contains("+ sh -c 'echo compiling; echo ELF > made.bin'"),
        "{err}"
    );
    assert!(err.contains("==> making /usr/bin/made"), "{err}");
    assert_one_error(
        appliance().args(["-q", "-v", "profiles"]),
        2,
        "error: the argument '--quiet' cannot be used with '--verbose'",
    );

    // A make that fails: one line naming the file, the command and its log.
    let bad = make_profile(
        &dir.path().join("bad"),
        r#"["sh", "-c", "echo boom; exit 3"]"#,
    );
    let out = dir.path().join("b");
    assert_one_error(
        appliance()
            .args(["build", bad.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .env("APPLIANCE_CACHE", dir.path().join("cache")),
        1,
        &format!(
            "error: overlay 'mk': late file /usr/bin/made: making it with `sh -c echo boom; exit 3` failed (exit status: 3); the lines above end its log {}/logs/00-make-made.log",
            out.display()
        ),
    );
    assert_eq!(dir_names(&out), ["logs"]);
    // `plan` works before the file exists, and shows the step.
    let plan = json(&run_ok(appliance().args([
        "plan",
        bad.to_str().unwrap(),
        "--json",
    ])));
    assert!(
        plan["steps"][0].as_str().unwrap().starts_with("make ")
            && plan["steps"][0]
                .as_str()
                .unwrap()
                .contains("`sh -c echo boom; exit 3`"),
        "{plan}"
    );
    // A source named by --var is shipped as it is: nothing is made.
    let plan = json(&run_ok(appliance().args([
        "plan",
        bad.to_str().unwrap(),
        "--json",
        "--var",
        "made=/bin/true",
    ])));
    assert!(
        plan["steps"][0].as_str().unwrap().starts_with("base: "),
        "{plan}"
    );
}

#[test]
fn renamed_flags_and_their_hidden_aliases() {
    let dir = scratch("cli-flags");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // assemble: --out/-o and --id-seed, with the old --seed; all accepted (the error is the
    // tree's, exit 1, not a usage error).
    for out_flag in ["--out", "-o"] {
        for seed_flag in ["--id-seed", "--seed"] {
            let out = dir.path().join("a");
            assert_one_error(
                appliance()
                    .args([
                        "assemble",
                        "--rootfs",
                        empty.to_str().unwrap(),
                        seed_flag,
                        "s",
                    ])
                    .arg(out_flag)
                    .arg(&out),
                1,
                "error: the tree has no kernel",
            );
            assert!(!out.exists());
        }
    }
    // seed: -o, --out and the old --output.
    let ud = dir.path().join("ud");
    std::fs::write(&ud, "#cloud-config\n").unwrap();
    for flag in ["-o", "--out", "--output"] {
        let img = dir.path().join(format!("seed{flag}.img"));
        run_ok(
            appliance()
                .arg("seed")
                .arg("--user-data")
                .arg(&ud)
                .arg(flag)
                .arg(&img),
        );
        assert!(img.is_file(), "{flag}");
    }
    // fetch: -o, --out and the old --to (an existing directory is refused, before anything).
    for flag in ["-o", "--out", "--to"] {
        assert_one_error(
            appliance()
                .args(["fetch", "debian12-test", flag])
                .arg(&empty)
                .current_dir(dir.path()),
            1,
            &format!(
                "error: --out {}: already exists; a bundle is made in a new directory",
                empty.display()
            ),
        );
    }
    // build and plan: -o and --out.
    for flag in ["-o", "--out"] {
        let plan = json(&run_ok(appliance().args([
            "plan",
            "debian12-test",
            "--json",
            flag,
            "/x/y",
        ])));
        assert_eq!(plan["outputs"][0], "/x/y/debian12-test.qcow2");
    }
    // The old spellings are hidden from --help; the new ones are shown.
    let help = |sub: &str| stdout(&run_ok(appliance().args([sub, "--help"])));
    let assemble = help("assemble");
    assert!(
        assemble.contains("-o, --out <DIR>") && assemble.contains("--id-seed <TEXT>"),
        "{assemble}"
    );
    assert!(!assemble.contains("--seed"), "{assemble}");
    let fetch = help("fetch");
    assert!(
        fetch.contains("-o, --out <DIR>") && !fetch.contains("--to"),
        "{fetch}"
    );
    let seed = help("seed");
    assert!(
        seed.contains("-o, --out <FILE>") && !seed.contains("--output"),
        "{seed}"
    );
    for sub in ["build", "plan"] {
        assert!(help(sub).contains("-o, --out <DIR>"), "{sub}");
    }
}

#[test]
fn boot_gives_a_cpu_with_avx_and_the_appliance_memory_by_default() {
    let dir = scratch("cli-boot");
    let image = dir.path().join("d.qcow2");
    std::fs::write(&image, b"").unwrap();
    let command = |args: &[&str]| {
        stdout(&run_ok(
            appliance()
                .arg("boot")
                .arg(&image)
                .arg("--print-command")
                .args(args),
        ))
    };
    let tcg = command(&["--accel", "tcg"]);
    assert!(tcg.contains(" -accel tcg -cpu max -m 4096 "), "{tcg}");
    let kvm = command(&["--accel", "kvm"]);
    assert!(kvm.contains(" -accel kvm -cpu host -m 4096 "), "{kvm}");
    let chosen = command(&["--accel", "tcg", "--cpu", "Haswell-v4", "--memory", "1024"]);
    assert!(chosen.contains(" -cpu Haswell-v4 -m 1024 "), "{chosen}");
    let help = stdout(&run_ok(appliance().args(["boot", "--help"])));
    assert!(
        help.contains("--cpu <MODEL>") && help.contains("[default: 4096]"),
        "{help}"
    );
}

#[test]
fn completions_and_man_page_are_generated() {
    let dir = scratch("cli-completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&run_ok(appliance().args(["completions", shell])));
        for word in ["assemble", "profiles", "id-seed", "cpu"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
        if shell == "bash" {
            let f = dir.path().join("appliance.bash");
            std::fs::write(&f, &script).unwrap();
            run_ok(tool("bash").arg("-n").arg(&f));
            // Sourced, it registers the completion function.
            let got = stdout(&run_ok(
                tool("bash")
                    .arg("-c")
                    .arg(format!("source {}; complete -p appliance", f.display())),
            ));
            assert!(got.contains("appliance"), "{got}");
        }
    }
    assert_one_error(
        appliance().args(["completions", "tcsh"]),
        2,
        "error: invalid value 'tcsh' for '<SHELL>'",
    );

    let page = run_ok(appliance().arg("man")).stdout;
    let f = dir.path().join("appliance.1");
    std::fs::write(&f, &page).unwrap();
    let text = String::from_utf8(page).unwrap();
    assert!(text.contains(".TH appliance 1"), "{text}");
    // man renders it (through groff), with every command listed.
    let rendered = stdout(&run_ok(
        tool("man")
            .arg("-l")
            .arg(&f)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"),
    ));
    for word in ["NAME", "SYNOPSIS", "build", "completions", "--quiet"] {
        assert!(rendered.contains(word), "man lacks {word}: {rendered}");
    }
    let pages = dir.path().join("man");
    run_ok(appliance().arg("man").arg("--dir").arg(&pages));
    let names = dir_names(&pages);
    for want in [
        "appliance.1",
        "appliance-build.1",
        "appliance-boot.1",
        "appliance-assemble.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    let boot = stdout(&run_ok(
        tool("man")
            .arg("-l")
            .arg(pages.join("appliance-boot.1"))
            .env("MANPAGER", "cat"),
    ));
    assert!(boot.contains("--cpu"), "{boot}");

    // A reader that stopped reading (`appliance man | head`) gets no error and status 0: the
    // pipe's read end is closed before the command starts, so its first write fails.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let piped = appliance()
        .arg("man")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        piped.status.success() && piped.stderr.is_empty(),
        "{piped:?}"
    );
}

/// Issue 13, point 10 (issue 5): `plan` and `build` with no profile use the product,
/// rocketchat-jitsi-bionic, from any directory; the help says so.
#[test]
fn plan_and_build_default_to_the_product_profile() {
    let dir = scratch("cli-default-profile");
    let missing = dir.path().join("not-built/appliance-firstboot");
    let mut c = appliance();
    c.current_dir(dir.path())
        .args(["plan", "--out"])
        .arg(dir.path().join("out"))
        .arg("--var")
        .arg(format!("firstboot_binary={}", missing.display()));
    let text = String::from_utf8(run_ok(&mut c).stdout).unwrap();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("profile rocketchat-jitsi-bionic (")
            && first.contains("profiles/rocketchat-jitsi-bionic.toml, sha256 "),
        "{first}"
    );
    for cmd in ["plan", "build"] {
        let out = appliance().args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("[default: rocketchat-jitsi-bionic]"),
            "{cmd} --help:\n{help}"
        );
    }
    // The build stops on the same missing late file the plan names, before any download:
    // it is the product it builds.
    let mut b = appliance();
    b.current_dir(dir.path())
        .args(["build", "--out"])
        .arg(dir.path().join("out"))
        .arg("--var")
        .arg(format!("firstboot_binary={}", missing.display()))
        .env("APPLIANCE_CACHE", dir.path().join("cache"));
    assert_one_error(
        &mut b,
        1,
        &format!(
            "error: overlay 'firstboot': late file /usr/local/sbin/appliance-firstboot: source {} does not exist",
            missing.display()
        ),
    );
}
