//! A run killed at any point converges: for every failpoint and every time it is passed, the
//! binary is aborted there (SIGABRT, no cleanup, as `kill -9` would leave it), run again
//! without the failpoint, and the tree must then equal the tree of a run that was never
//! interrupted, with no litter left (staged file, backup, journal or extra hard link: see
//! [`litter`]), and an uninterrupted run leaves none either. Secrets are seeded, so files are
//! compared byte for byte; only generated certificates and keys (random ECDSA keys) are
//! compared by mode and kind.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::fixture::{assert_same, Fixture, Flavor};
use firstboot::hooks::FAILPOINTS;

type Snapshot = Vec<(String, String)>;

/// The tree, with PEM contents reduced to their kind.
fn normalized(f: &Fixture) -> Snapshot {
    f.snapshot(&|p| p == "/var/lib/appliance/lock")
        .into_iter()
        .map(|(path, what)| {
            let what = match what.split_once('\n') {
                Some((mode, content)) if content.starts_with("-----BEGIN ") => {
                    let kind = content.lines().next().unwrap_or_default();
                    format!("{mode}\n{kind} ...")
                }
                _ => what,
            };
            (path, what)
        })
        .collect()
}

/// What a finished run must not leave anywhere in the tree: staged files and backups
/// (`.firstboot-*`, `*.tmp`), the journal, and a second hard link to any regular file (a backup
/// made by linking keeps an old key reachable under another name).
fn litter(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let name = path.file_name().unwrap().to_string_lossy();
            if name.contains(".firstboot-")
                || name.ends_with(".tmp")
                || name.contains("apply.journal")
            {
                found.push(rel);
            } else if meta.is_dir() {
                dirs.push(path);
            } else if meta.is_file() && meta.nlink() > 1 {
                found.push(format!("{rel} (one of {} hard links)", meta.nlink()));
            }
        }
    }
    found.sort();
    found
}

struct Scenario {
    name: &'static str,
    /// A tree ready for the interrupted command.
    setup: fn() -> Fixture,
    command: &'static str,
}

fn first_boot() -> Fixture {
    let f = Fixture::new(Flavor::Jitsi);
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet.example.com\n");
    f
}

/// A configured machine whose config.yaml was edited: new name, ROOT_URL on 8443.
fn edited() -> Fixture {
    let f = Fixture::new(Flavor::Debian);
    f.set_user_data("#cloud-config\nappliance:\n  dns_name: meet.example.com\n");
    f.apply();
    let text = f.read("/etc/appliance/config.yaml").replace(
        "dns_name: \"meet.example.com\"",
        "dns_name: \"video.example.org\"\nroot_url: \"https://video.example.org:8443/\"",
    );
    f.write_mode("/etc/appliance/config.yaml", &text, 0o600);
    f
}

fn run(f: &Fixture, command: &str, log: &str, failpoint: Option<&str>) -> std::process::Output {
    let mut env = vec![("APPLIANCE_FIRSTBOOT_FAKE_SERVICES", log)];
    if let Some(point) = failpoint {
        env.push(("APPLIANCE_FIRSTBOOT_FAILPOINT", point));
    }
    f.run_binary(&[command], &env)
}

fn check(scenario: &Scenario) -> usize {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("services.log");
    let log = log.to_str().unwrap();
    let reference = {
        let f = (scenario.setup)();
        let out = run(&f, scenario.command, log, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left = litter(f.root());
        assert!(left.is_empty(), "{}: litter {left:?}", scenario.name);
        normalized(&f)
    };
    let mut interrupted = 0;
    for point in FAILPOINTS {
        for n in 1.. {
            let f = (scenario.setup)();
            let spec = format!("{point}:{n}");
            let out = run(&f, scenario.command, log, Some(&spec));
            if out.status.success() {
                // Passed fewer than n times: every passage of this point was tried.
                assert!(
                    n > 1,
                    "{}: failpoint {point} is never passed",
                    scenario.name
                );
                break;
            }
            assert_eq!(
                out.status.signal(),
                Some(SIGABRT),
                "{}: {spec}: {}",
                scenario.name,
                String::from_utf8_lossy(&out.stderr)
            );
            interrupted += 1;
            let out = run(&f, scenario.command, log, None);
            assert!(
                out.status.success(),
                "{}: after {spec}: {}",
                scenario.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let after = normalized(&f);
            let left = litter(f.root());
            assert!(
                left.is_empty(),
                "{}: after {spec}: litter {left:?}",
                scenario.name
            );
            if after != reference {
                eprintln!("{}: after {spec}:", scenario.name);
                assert_same(&after, &reference);
            }
        }
    }
    interrupted
}

/// What `std::process::abort` raises.
const SIGABRT: i32 = 6;

#[test]
fn every_interrupted_first_boot_converges() {
    let n = check(&Scenario {
        name: "first boot (Jitsi)",
        setup: first_boot,
        command: "apply",
    });
    println!("first boot: interrupted and resumed {n} times");
    assert!(n > 50, "{n}");
}

#[test]
fn every_interrupted_reconfigure_converges() {
    let n = check(&Scenario {
        name: "reconfigure (Debian)",
        setup: edited,
        command: "reconfigure",
    });
    println!("reconfigure: interrupted and resumed {n} times");
    assert!(n > 30, "{n}");
}
