//! The Ubuntu bases' tests (product_base.rs for 18.04, noble_base.rs for 24.04): a base
//! profile built once with this run's firstboot binary, and booted with a NoCloud seed until
//! appliance-firstboot says what it applied.

use super::{appliance, run_ok, scratch};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One Ubuntu base under test.
pub struct UbuntuBase {
    /// The profile's image name (`bionic-base`), which also names scratch and log lines.
    pub name: &'static str,
    /// The profile, relative to the repository.
    pub profile: &'static str,
    /// The DNS name the seed gives.
    pub dns: &'static str,
    /// The kernel's version as its banner starts ("4.15.0-").
    pub kernel: &'static str,
    /// The longest boot to wait for, in seconds.
    pub timeout: u32,
}

impl UbuntuBase {
    /// Builds the profile with `appliance build` (this run's firstboot binary when scripts/test
    /// names one) and returns the qcow2.
    pub fn build(&self) -> PathBuf {
        let dir = scratch(self.name).keep();
        let out = dir.join("out");
        let mut cmd = appliance();
        cmd.arg("build")
            .arg(super::repo().join(self.profile))
            .arg("-o")
            .arg(&out);
        if let Some(bin) = std::env::var_os("APPLIANCE_FIRSTBOOT_BINARY") {
            let mut var = std::ffi::OsString::from("firstboot_binary=");
            var.push(bin);
            cmd.arg("--var").arg(var);
        }
        let start = Instant::now();
        run_ok(&mut cmd);
        eprintln!("{}: built in {:.0?}", self.name, start.elapsed());
        out.join(format!("{}.qcow2", self.name))
    }

    /// Boots `image` with a NoCloud seed under `firmware` (`appliance boot`'s flags), one VM at
    /// a time, and returns the console once appliance-firstboot has said what it applied. On the
    /// way the image's own cloud-init (`cloud_init`, its version) ran the seed, the NIC got
    /// QEMU's DHCP lease (netplan and networkd), no unit failed, and the kernel is the base's.
    pub fn boot_to_configured(
        &self,
        image: &Path,
        firmware: &[&str],
        tag: &str,
        cloud_init: &str,
    ) -> String {
        static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
        let (name, dns) = (self.name, self.dns);
        let dir = scratch(&format!("{name}-boot-{tag}"));
        let ud = dir.path().join("user-data");
        std::fs::write(
            &ud,
            format!("#cloud-config\nhostname: {name}-{tag}\nappliance:\n  dns_name: {dns}\n"),
        )
        .unwrap();
        let log = dir.path().join("serial.log");
        let start = Instant::now();
        let out = appliance()
            .arg("boot")
            .arg(image)
            .args(firmware)
            .arg("--user-data")
            .arg(&ud)
            .args(["--memory", "1024", "--cpus", "1", "--cpu", "qemu64"])
            .arg("--timeout")
            .arg(self.timeout.to_string())
            .args(["--expect", &format!("applied {dns} for instance ")])
            .arg("--serial-log")
            .arg(&log)
            .output()
            .unwrap();
        let console =
            String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        assert!(
            out.status.success(),
            "{tag}: no firstboot line ({}):\n{}\nlast lines:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        eprintln!(
            "{name} {tag}: configured {:.0?} after QEMU's start",
            start.elapsed()
        );
        assert!(
            console.contains(&format!("Cloud-init v. {cloud_init}"))
                && console.contains("running 'modules:config'"),
            "{tag}: no cloud-init {cloud_init}:\n{console}"
        );
        assert!(
            console.lines().any(|l| l.contains("ci-info: |")
                && l.contains("| True |")
                && l.contains("10.0.2.15")),
            "{tag}: no DHCP lease:\n{console}"
        );
        assert!(!console.contains("FAILED"), "{tag}: {console}");
        assert!(
            console.contains(&format!("Linux version {}", self.kernel)),
            "{tag}: not the kernel {}:\n{console}",
            self.kernel
        );
        console
    }
}
