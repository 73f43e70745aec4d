//! Booting images under QEMU: `appliance boot`, and the boot tests.
//!
//! KVM is used only once it is proven to work: some hosts (PVM-based nested setups, for one)
//! expose a /dev/kvm that hangs stock guest kernels. The proof is the image itself: booted
//! with KVM, its kernel must print its first line within a short time. The verdict is cached
//! per host kernel and QEMU version, so only the first boot on a machine pays for it.

use crate::util::partial;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_CODE_SECURE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// Variables with Microsoft's keys enrolled and Secure Boot enforcing.
const OVMF_VARS_SECURE: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi { secure_boot: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The CPU model a guest gets unless told otherwise: one with AVX, which the appliance's
    /// MongoDB needs (QEMU's own default, qemu64, has none). Under KVM the host's CPU; under
    /// TCG `max`, everything QEMU emulates.
    pub fn default_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// Guest memory `appliance boot` gives by default, in MiB: what Rocket.Chat, MongoDB, Jitsi's
/// JVMs, prosody and nginx need together.
pub const DEFAULT_MEMORY_MIB: u32 = 4096;

/// Where the guest's serial console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// This terminal, with QEMU's monitor multiplexed (Ctrl-A X quits).
    Terminal,
    File(PathBuf),
}

/// A host port on 127.0.0.1 forwarded to a guest TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    pub host: u16,
    pub guest: u16,
}

impl std::str::FromStr for Forward {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            anyhow::anyhow!(
                "'{s}' is not HOSTPORT:GUESTPORT (two TCP ports from 1 to 65535, like 8443:443)"
            )
        };
        let (h, g) = s.split_once(':').ok_or_else(bad)?;
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        Ok(Forward {
            host: port(h)?,
            guest: port(g)?,
        })
    }
}

/// One VM to boot.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub image: PathBuf,
    pub firmware: Firmware,
    pub memory_mib: u32,
    pub cpus: u32,
    /// QEMU's `-cpu` model; `None` for the accelerator's [`Accel::default_cpu`].
    pub cpu: Option<String>,
    /// A NoCloud seed volume attached as a second, read-only disk.
    pub seed: Option<PathBuf>,
    pub forwards: Vec<Forward>,
    /// Discard the guest's writes (the image stays as built).
    pub snapshot: bool,
    pub serial: Serial,
}

/// QEMU's format name for an image, from its file name.
pub fn image_format(image: &Path) -> Result<&'static str> {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let format = [
        (".qcow2", "qcow2"),
        (".raw", "raw"),
        (".img", "raw"),
        (".vmdk", "vmdk"),
        (".vhd", "vpc"),
    ]
    .iter()
    .find(|(ext, _)| name.ends_with(ext))
    .map(|(_, f)| *f);
    format.with_context(|| {
        format!(
            "{} is not an image QEMU boots here (.qcow2, .raw, .img, .vmdk or .vhd)",
            image.display()
        )
    })
}

impl VmSpec {
    /// The QEMU command line; UEFI variables are copied into `work` (the firmware writes them).
    pub fn command(&self, accel: Accel, work: &Path) -> Result<Command> {
        let format = image_format(&self.image)?;
        if !self.image.is_file() {
            bail!("image {} does not exist", self.image.display());
        }
        let mut c = Command::new(crate::util::host::require("qemu-system-x86_64")?);
        c.args([
            "-accel",
            accel.name(),
            "-cpu",
            self.cpu.as_deref().unwrap_or(accel.default_cpu()),
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ])
        .args(["-no-reboot", "-display", "none"]);
        if let Firmware::Uefi { secure_boot } = self.firmware {
            let (code, vars) = if secure_boot {
                (OVMF_CODE_SECURE, OVMF_VARS_SECURE)
            } else {
                (OVMF_CODE, OVMF_VARS)
            };
            let copy = work.join("OVMF_VARS.fd");
            std::fs::copy(vars, &copy).with_context(|| {
                format!("copying {vars}: UEFI boot needs OVMF (`apt-get install ovmf`)")
            })?;
            if secure_boot {
                c.args([
                    "-machine",
                    "q35,smm=on",
                    "-global",
                    "driver=cfi.pflash01,property=secure,value=on",
                ]);
            }
            c.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={code}"
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    copy.display()
                ));
        }
        c.arg("-drive").arg(format!(
            "file={},if=virtio,format={format}{}",
            self.image.display(),
            if self.snapshot { ",snapshot=on" } else { "" }
        ));
        if let Some(seed) = &self.seed {
            c.arg("-drive").arg(format!(
                "file={},if=virtio,format=raw,readonly=on",
                seed.display()
            ));
        }
        // User-mode networking; forwards listen on loopback only.
        let fwd: String = self
            .forwards
            .iter()
            .map(|f| format!(",hostfwd=tcp:127.0.0.1:{}-:{}", f.host, f.guest))
            .collect();
        c.arg("-nic").arg(format!("user,model=virtio-net-pci{fwd}"));
        match &self.serial {
            Serial::Terminal => {
                c.args(["-serial", "mon:stdio", "-monitor", "none"]);
            }
            Serial::File(p) => {
                c.args(["-monitor", "none", "-serial"])
                    .arg(format!("file:{}", p.display()));
                c.stdin(Stdio::null()).stdout(Stdio::null());
            }
        }
        Ok(c)
    }
}

/// A running VM, stopped when dropped.
pub struct Vm {
    child: Child,
}

impl Vm {
    pub fn start(mut cmd: Command) -> Result<Vm> {
        let child = cmd.spawn().context("starting qemu-system-x86_64")?;
        partial::register_child(child.id());
        Ok(Vm { child })
    }

    /// Waits until QEMU exits.
    pub fn wait(&mut self) -> Result<std::process::ExitStatus> {
        self.child.wait().context("waiting for QEMU")
    }

    /// Waits until a line containing `needle` appears in `serial` and returns it; `None` when
    /// QEMU exits or `limit` passes first.
    pub fn wait_for(&mut self, serial: &Path, needle: &str, limit: Duration) -> Option<String> {
        self.wait_for_line(serial, limit, |l| l.contains(needle))
    }

    /// Waits until a line of `serial` matches `wanted` and returns it; `None` when QEMU exits
    /// or `limit` passes first.
    pub fn wait_for_line(
        &mut self,
        serial: &Path,
        limit: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(line) = find_line(serial, &wanted) {
                return Some(line);
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return find_line(serial, &wanted);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        partial::unregister_child(self.child.id());
    }
}

fn find_line(serial: &Path, wanted: &impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read(serial).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| wanted(l))
        .map(str::to_string)
}

/// The last `n` lines of a serial log, for error messages.
pub fn tail(serial: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn probe_cache_key() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let digest =
        <sha2::Sha256 as sha2::Digest>::digest(format!("{}\n{qemu}", kernel.trim()).as_bytes());
    hex::encode(&digest[..8])
}

fn probe_cache_dir() -> PathBuf {
    std::env::var_os("APPLIANCE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/appliance".into())
}

/// The accelerator, when it is known without booting anything: TCG without a usable
/// /dev/kvm, else the cached verdict of an earlier probe.
pub fn known_accel() -> Option<Accel> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Some(Accel::Tcg);
    }
    let cache = probe_cache_dir().join(format!("kvm-probe-{}", probe_cache_key()));
    let v = std::fs::read_to_string(cache).ok()?;
    Some(if v.trim() == "kvm" {
        Accel::Kvm
    } else {
        Accel::Tcg
    })
}

/// KVM if it demonstrably boots `spec`'s kernel, TCG otherwise.
pub fn choose_accel(spec: &VmSpec, work: &Path) -> Result<Accel> {
    if let Some(known) = known_accel() {
        return Ok(known);
    }
    let cache_dir = probe_cache_dir();
    let cache = cache_dir.join(format!("kvm-probe-{}", probe_cache_key()));
    eprintln!("checking whether KVM boots this image's kernel (once per host, up to 25 s)");
    let serial = work.join("kvm-probe.log");
    // Without Secure Boot: its SMM emulation is a separate question from whether KVM runs
    // kernels, and the verdict is cached for every kind of boot.
    let firmware = match spec.firmware {
        Firmware::Uefi { .. } => Firmware::Uefi { secure_boot: false },
        bios => bios,
    };
    let probe = VmSpec {
        firmware,
        serial: Serial::File(serial.clone()),
        snapshot: true,
        forwards: Vec::new(),
        ..spec.clone()
    };
    let mut cmd = probe.command(Accel::Kvm, work)?;
    // A failing probe is the expected case on some hosts: keep QEMU's complaints out of sight.
    cmd.stderr(Stdio::null());
    let mut vm = Vm::start(cmd)?;
    // Under working KVM the kernel's first line comes within seconds of power-on.
    let works = vm
        .wait_for(&serial, "Linux version", Duration::from_secs(25))
        .is_some();
    drop(vm);
    let accel = if works { Accel::Kvm } else { Accel::Tcg };
    if std::fs::create_dir_all(&cache_dir).is_ok() {
        let _ = std::fs::write(&cache, accel.name());
    }
    Ok(accel)
}

/// The accelerator `appliance boot` uses: `asked` is kvm, tcg or auto (KVM where a probe
/// shows it booting this image; with `print_only`, what is known without a probe). The
/// command line is checked first, before time goes into the probe.
pub fn accel_for(spec: &VmSpec, asked: &str, print_only: bool, work: &Path) -> Result<Accel> {
    spec.command(Accel::Tcg, work)?;
    Ok(match asked {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ if print_only => known_accel().unwrap_or(Accel::Tcg),
        _ => choose_accel(spec, work)?,
    })
}

/// Runs the VM of `cmd`: until a serial line with `expect` (printed; an error naming the
/// console's last lines if none comes within `timeout`), else until QEMU exits (an error if
/// it fails).
pub fn run_vm(
    cmd: Command,
    serial: &Serial,
    expect: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let mut vm = Vm::start(cmd)?;
    match (expect, serial) {
        (Some(text), Serial::File(log)) => match vm.wait_for(log, text, timeout) {
            Some(line) => {
                println!("{line}");
                Ok(())
            }
            None => anyhow::bail!(
                "no line with {text:?} on the serial console within {}s; it ended with: {}",
                timeout.as_secs(),
                tail(log, 3).replace('\n', " / ")
            ),
        },
        _ => {
            let status = vm.wait()?;
            if !status.success() {
                anyhow::bail!("QEMU exited with {status}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_parse_and_bind_to_loopback() {
        assert_eq!(
            "8443:443".parse::<Forward>().unwrap(),
            Forward {
                host: 8443,
                guest: 443
            }
        );
        for bad in ["443", "a:b", "0:22", "70000:22", ":22"] {
            assert_eq!(
                bad.parse::<Forward>().unwrap_err().to_string(),
                format!("'{bad}' is not HOSTPORT:GUESTPORT (two TCP ports from 1 to 65535, like 8443:443)")
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("d.qcow2");
        std::fs::write(&image, b"").unwrap();
        let spec = VmSpec {
            image,
            firmware: Firmware::Bios,
            memory_mib: 1024,
            cpus: 1,
            cpu: None,
            seed: None,
            forwards: vec![
                Forward {
                    host: 2222,
                    guest: 22,
                },
                Forward {
                    host: 8443,
                    guest: 443,
                },
            ],
            snapshot: true,
            serial: Serial::File(dir.path().join("s.log")),
        };
        let cmd = spec.command(Accel::Tcg, dir.path()).unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        // A CPU with AVX by default (MongoDB needs it): `max` under TCG, `host` under KVM.
        assert_eq!(after("-cpu"), "max");
        let kvm = spec.command(Accel::Kvm, dir.path()).unwrap();
        let kvm: Vec<String> = kvm
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            kvm[kvm.iter().position(|a| a == "-cpu").unwrap() + 1],
            "host"
        );
        let chosen = VmSpec {
            cpu: Some("Haswell".into()),
            ..spec.clone()
        };
        let chosen = chosen.command(Accel::Kvm, dir.path()).unwrap();
        assert!(
            chosen.get_args().any(|a| a == "Haswell"),
            "{:?}",
            chosen.get_args().collect::<Vec<_>>()
        );
        assert!(args.contains(&"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8443-:443".to_string()), "{args:?}");
        assert!(
            args.iter()
                .any(|a| a.ends_with(",if=virtio,format=qcow2,snapshot=on")),
            "{args:?}"
        );
        assert_eq!(
            image_format(Path::new("x.iso")).unwrap_err().to_string(),
            "x.iso is not an image QEMU boots here (.qcow2, .raw, .img, .vmdk or .vhd)"
        );
    }
}
