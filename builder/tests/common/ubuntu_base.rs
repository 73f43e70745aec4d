//! The Ubuntu bases' tests (product_base.rs for 18.04, noble_base.rs for 24.04): a base
//! profile built once with this run's firstboot binary, and booted with a NoCloud seed until
//! appliance-firstboot says what it applied; and what makes either a cloud image, read from the
//! image.

use super::{appliance, run_ok, scratch, ImageReader};
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
    /// Where the kernel's modules are: /lib/modules, or /usr/lib/modules with merged /usr.
    pub modules: &'static str,
    /// The endings a module's file may have ("ko"; also "ko.zst" where they are compressed).
    pub module_endings: &'static [&'static str],
    /// What the kernel has of gVNIC's driver.
    pub gve: Gve,
}

/// What a base's kernel has of gve, the driver of GCE's gVNIC (profiles/README.md says which).
pub enum Gve {
    /// No driver: gve came with Linux 5.3.
    NoDriver,
    /// The kernel builds gve (modules.order lists it), but it ships in linux-modules-extra, which
    /// the virtual flavour leaves out.
    BuiltNotInstalled,
}

/// The drivers for the clouds' disks and NICs that every base's kernel must have.
const CLOUD_MODULES: &[&str] = &[
    // virtio (KVM, QEMU, GCE, OpenStack)
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "virtio_pci",
    "virtio_console",
    // NVMe (AWS Nitro, GCE, Azure)
    "nvme",
    "nvme-core",
    // ENA (AWS), Xen front ends (older AWS types)
    "ena",
    "xen-netfront",
    "xen-blkfront",
    // Hyper-V (Azure)
    "hv_vmbus",
    "hv_netvsc",
    "hv_storvsc",
    "hv_utils",
    "hid-hyperv",
    "hyperv-keyboard",
];

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

    /// Checks what makes the image in `root` a cloud image: the one kernel (the base's) has the
    /// drivers for the clouds' disks and NICs (and gve as `self.gve` says), cloud-init's
    /// datasources include the clouds', and its default user is `ubuntu`.
    pub fn assert_cloud_ready(&self, root: &ImageReader) {
        let listing = root.debugfs(&format!("ls -p {}", self.modules));
        // `ls -p`: /inode/mode/uid/gid/name/size/ per entry.
        let kernels: Vec<&str> = listing
            .lines()
            .filter_map(|l| l.split('/').nth(5))
            .filter(|n| n.starts_with(self.kernel))
            .collect();
        assert_eq!(kernels.len(), 1, "{listing}");
        let dir = format!("{}/{}", self.modules, kernels[0]);
        let modules =
            root.cat(&format!("{dir}/modules.dep")) + &root.cat(&format!("{dir}/modules.builtin"));
        // A built-in module is name.ko in modules.builtin, whatever the endings of loadable ones.
        let has = |name: &str| {
            modules.lines().any(|l| {
                let path = l.split(':').next().unwrap_or_default();
                let file = path.rsplit('/').next().unwrap_or_default();
                self.module_endings
                    .iter()
                    .any(|end| file == format!("{name}.{end}"))
            })
        };
        for m in CLOUD_MODULES {
            assert!(has(m), "{m} is not among {dir}'s modules");
        }
        let order = root.cat(&format!("{dir}/modules.order"));
        let builds_gve = order.lines().any(|l| l.ends_with("/gve.ko"));
        match self.gve {
            Gve::NoDriver => {
                assert!(
                    !has("gve"),
                    "gve is installed: profiles/README.md says this kernel has no driver for it"
                );
                assert!(
                    !builds_gve,
                    "the kernel builds gve: profiles/README.md says it has no driver for it"
                );
            }
            Gve::BuiltNotInstalled => {
                assert!(
                    !has("gve"),
                    "gve is installed: profiles/README.md says it is not"
                );
                assert!(builds_gve, "the kernel does not build gve");
            }
        }

        let dpkg = root.cat("/etc/cloud/cloud.cfg.d/90_dpkg.cfg");
        let list = dpkg
            .lines()
            .find_map(|l| l.strip_prefix("datasource_list: "))
            .unwrap_or_else(|| panic!("no datasource_list in {dpkg}"));
        for ds in ["NoCloud", "Ec2", "GCE", "Azure", "OpenStack"] {
            assert!(
                list.split([',', '[', ']', ' ']).any(|w| w == ds),
                "{ds} not in {list}"
            );
        }
        let cfg = root.cat("/etc/cloud/cloud.cfg");
        // The first `default_user:` is system_info's; the mapping it opens starts with the name,
        // indented deeper (cloud-init 23.1 indents the two 3 and 5 spaces, 24.x 2 and 4).
        let indent = |l: &str| l.len() - l.trim_start().len();
        let mut from = cfg.lines().skip_while(|l| !l.contains("default_user:"));
        let user = match (from.next(), from.next()) {
            (Some(key), Some(name))
                if key.trim() == "default_user:" && indent(name) > indent(key) =>
            {
                name.trim()
            }
            _ => "",
        };
        assert_eq!(user, "name: ubuntu", "no ubuntu default user in\n{cfg}");
    }
}
