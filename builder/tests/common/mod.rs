//! Shared by the integration tests: the test tree, running `appliance`, and independent tools.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The Debian 12 tree made by scripts/make-test-tree; scripts/test exports its path.
pub fn test_tree() -> PathBuf {
    let p = std::env::var_os("APPLIANCE_TEST_TREE").expect(
        "APPLIANCE_TEST_TREE is not set: run scripts/test, or export APPLIANCE_TEST_TREE=$(scripts/make-test-tree)",
    );
    let p = PathBuf::from(p);
    assert!(
        p.join("boot").is_dir(),
        "APPLIANCE_TEST_TREE {} is not a root tree",
        p.display()
    );
    p
}

/// Scratch space on the disk (outputs are GiBs; /tmp may be small or in memory).
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = Path::new("/var/tmp/appliance-tests");
    std::fs::create_dir_all(base).unwrap();
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .unwrap()
}

pub fn appliance() -> Command {
    Command::new(env!("CARGO_BIN_EXE_appliance"))
}

/// Runs a command and returns its output, panicking with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tool(name: &str) -> Command {
    Command::new(name)
}

/// The files in a directory, sorted (hidden ones included).
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Byte offset of partition `n` in a GPT disk, read back with sgdisk (not with our code).
pub fn partition_offset(disk: &Path, n: u32) -> u64 {
    let out = stdout(&run_ok(
        tool("sgdisk").arg("-i").arg(n.to_string()).arg(disk),
    ));
    let first = out
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .unwrap_or_else(|| panic!("no partition {n} in {out}"));
    first
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 512
}

/// Runs `cmd` and checks that it fails with exit code `code` and exactly one `error:` line,
/// which starts with `want` (the one clear line every bad input must get).
pub fn assert_one_error(cmd: &mut Command, code: i32, want: &str) {
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(code), "{cmd:?}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{cmd:?}: {stderr}");
    assert!(
        errors[0].starts_with(want),
        "{cmd:?}:\n got: {}\nwant: {want}",
        errors[0]
    );
}
