//! Shared by the integration tests: the test tree, running `appliance`, and independent tools.
#![allow(dead_code)]

use appliance::qemu::{self, Firmware, Forward, Serial, Vm, VmSpec};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub mod guest;
pub mod product;
pub mod ubuntu_base;

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

/// Scratch space on the disk (outputs are GiBs; /tmp may be small or in memory):
/// /var/tmp/appliance-tests, which scripts/test empties before and after its run, or
/// $APPLIANCE_TEST_SCRATCH (a run by hand beside scripts/test's).
pub fn scratch(name: &str) -> tempfile::TempDir {
    let base = std::env::var_os("APPLIANCE_TEST_SCRATCH")
        .map_or_else(|| PathBuf::from("/var/tmp/appliance-tests"), PathBuf::from);
    let base = base.as_path();
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

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The debian12-test profile, with `[disk]` replaced by `disk`, written into `dir` (its
/// overlays are the repository's).
pub fn debian12_profile(dir: &Path, disk: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("profiles/debian12-test.toml")).unwrap();
    let start = text.find("[disk]").expect("the profile has a [disk] table");
    let end = text[start..]
        .find("\n[")
        .map_or(text.len(), |i| start + i + 1);
    let text = format!(
        "overlays_dir = \"{}\"\n{}{disk}\n{}",
        repo().join("overlays").display(),
        &text[..start],
        &text[end..]
    );
    // overlays_dir is a top-level key: it must come before the first table, as written.
    let p = dir.join("debian12-test.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A VM booted for a test, with its serial console in a file.
pub struct TestVm {
    pub vm: Vm,
    pub serial: PathBuf,
    /// How long each wait on the serial console may take (7 minutes unless set).
    pub wait: Duration,
    _dir: tempfile::TempDir,
}

impl TestVm {
    pub fn start(
        image: &Path,
        firmware: Firmware,
        seed: Option<PathBuf>,
        forwards: Vec<Forward>,
        snapshot: bool,
    ) -> TestVm {
        // QEMU's own default model, which the suite's boot times were measured with.
        TestVm::start_spec(
            image,
            firmware,
            1024,
            Some("qemu64".into()),
            seed,
            forwards,
            snapshot,
        )
    }

    /// A VM on `image` itself (not a snapshot) with `memory_mib` and the accelerator's default
    /// CPU model (as `appliance boot` has it).
    pub fn start_sized(
        image: &Path,
        firmware: Firmware,
        memory_mib: u32,
        seed: Option<PathBuf>,
        forwards: Vec<Forward>,
    ) -> TestVm {
        TestVm::start_spec(image, firmware, memory_mib, None, seed, forwards, false)
    }

    fn start_spec(
        image: &Path,
        firmware: Firmware,
        memory_mib: u32,
        cpu: Option<String>,
        seed: Option<PathBuf>,
        forwards: Vec<Forward>,
        snapshot: bool,
    ) -> TestVm {
        let dir = scratch("vm");
        let serial = dir.path().join("serial.log");
        let spec = VmSpec {
            image: image.to_path_buf(),
            firmware,
            memory_mib,
            cpus: 1,
            cpu,
            seed,
            forwards,
            snapshot,
            serial: Serial::File(serial.clone()),
        };
        let accel = qemu::choose_accel(&spec, dir.path()).unwrap();
        let vm = Vm::start(spec.command(accel, dir.path()).unwrap()).unwrap();
        TestVm {
            vm,
            serial,
            wait: Duration::from_secs(420),
            _dir: dir,
        }
    }

    /// The first serial line containing `needle`, waiting up to `wait` (7 minutes: TCG).
    pub fn wait_for(&mut self, needle: &str) -> String {
        let limit = self.wait;
        self.vm
            .wait_for(&self.serial, needle, limit)
            .unwrap_or_else(|| {
                panic!(
                    "no {needle:?} on the serial console within {limit:?}; last lines:\n{}",
                    qemu::tail(&self.serial, 40)
                )
            })
    }

    /// The first serial line containing any of `needles`, waiting as [`TestVm::wait_for`]
    /// does.
    pub fn wait_for_any(&mut self, needles: &[&str]) -> String {
        self.wait_for_match(&format!("none of {needles:?}"), |l| {
            needles.iter().any(|n| l.contains(n))
        })
    }

    /// The first serial line for which `matches` holds, waiting as [`TestVm::wait_for`] does;
    /// `what` says in the panic what was waited for.
    pub fn wait_for_match(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let limit = self.wait;
        self.vm
            .wait_for_line(&self.serial, limit, matches)
            .unwrap_or_else(|| {
                panic!(
                    "{what} on the serial console within {limit:?}; last lines:\n{}",
                    qemu::tail(&self.serial, 40)
                )
            })
    }

    /// Everything on the serial console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned()
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Python HTTP server on 127.0.0.1 (a `python3` command line whose first line of output
/// has the port as its last number, as `http.server` prints it), stopped on drop.
pub struct PythonServer {
    child: std::process::Child,
    pub port: u16,
}

impl PythonServer {
    pub fn start(args: &[&str], dir: &Path) -> PythonServer {
        let mut child = Command::new("python3")
            .arg("-u")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting python3 {args:?}: {e}"));
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // http.server: "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .filter_map(|w| w.parse::<u16>().ok())
            .find(|p| *p > 1024)
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonServer { child, port }
    }

    /// Serves the files in `dir` (Python's http.server).
    pub fn files(dir: &Path) -> PythonServer {
        PythonServer::start(&["-m", "http.server", "--bind", "127.0.0.1", "0"], dir)
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads files of an image's root file system (partition 1) with debugfs, from a raw copy
/// of the image made by qemu-img (removed on drop).
pub struct ImageReader {
    raw: PathBuf,
    offset: u64,
}

impl ImageReader {
    pub fn open(qcow2: &Path) -> ImageReader {
        let raw = qcow2.with_extension("test.raw");
        run_ok(
            tool("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(qcow2)
                .arg(&raw),
        );
        let offset = partition_offset(&raw, 1);
        ImageReader { raw, offset }
    }

    pub fn debugfs(&self, request: &str) -> String {
        stdout(&run_ok(
            tool("debugfs").arg("-R").arg(request).arg(format!(
                "{}?offset={}",
                self.raw.display(),
                self.offset
            )),
        ))
    }

    pub fn cat(&self, path: &str) -> String {
        self.debugfs(&format!("cat {path}"))
    }

    /// Checks with scripts/check-glibc (objdump) that the image's appliance-firstboot needs no
    /// glibc symbol newer than 2.27 (Ubuntu 18.04's).
    pub fn assert_firstboot_needs_at_most_glibc_2_27(&self) {
        self.assert_firstboot_needs_at_most_glibc("2.27");
    }

    /// Checks with scripts/check-glibc (objdump) that the image's appliance-firstboot needs no
    /// glibc symbol newer than `version`.
    pub fn assert_firstboot_needs_at_most_glibc(&self, version: &str) {
        let dir = scratch("image-glibc");
        let bin = dir.path().join("appliance-firstboot");
        self.debugfs(&format!(
            "dump /usr/local/sbin/appliance-firstboot {}",
            bin.display()
        ));
        assert!(
            bin.metadata().map(|m| m.len()).unwrap_or(0) > 0,
            "no firstboot binary in the image"
        );
        let out = run_ok(
            tool("bash")
                .arg(repo().join("scripts/check-glibc"))
                .arg(&bin)
                .arg(version),
        );
        assert!(
            stdout(&out).starts_with("check-glibc: "),
            "{}",
            stdout(&out)
        );
    }
}

impl Drop for ImageReader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.raw);
    }
}
