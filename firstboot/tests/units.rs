//! The systemd units the firstboot overlay ships: checked by `systemd-analyze verify` in a root
//! holding the host's units (for the targets they name) and a stand-in for the binary, and
//! enabled through the links in the overlay.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const UNITS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../overlays/firstboot/files/etc/systemd/system"
);

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let _ = std::fs::remove_file(&dest);
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else if kind.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn the_timer_is_enabled_and_starts_the_acme_run() {
    let units = Path::new(UNITS);
    let link = std::fs::read_link(units.join("timers.target.wants/appliance-acme.timer")).unwrap();
    assert_eq!(link, Path::new("/etc/systemd/system/appliance-acme.timer"));
    let service = std::fs::read_to_string(units.join("appliance-acme.service")).unwrap();
    assert!(service.contains("\nExecStart=/usr/local/sbin/appliance-firstboot acme --scheduled\n"));
    assert!(service
        .contains("\nAfter=network-online.target nginx.service appliance-firstboot.service\n"));
    let timer = std::fs::read_to_string(units.join("appliance-acme.timer")).unwrap();
    assert!(timer.contains("\nOnBootSec=1min\nOnUnitActiveSec=15min\n"));
    assert!(timer.contains("\nWantedBy=timers.target\n"));
}

#[test]
fn systemd_analyze_verifies_the_units() {
    let host_units = Path::new("/lib/systemd/system");
    // scripts/setup installs systemd (systemd-analyze and the units these depend on).
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: run scripts/setup"
    );
    assert!(
        host_units.join("sysinit.target").exists(),
        "no systemd units in {}: run scripts/setup",
        host_units.display()
    );
    let root = tempfile::tempdir().unwrap();
    copy_dir(host_units, &root.path().join("lib/systemd/system"));
    copy_dir(Path::new(UNITS), &root.path().join("etc/systemd/system"));
    let binary = root.path().join("usr/local/sbin/appliance-firstboot");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::write(&binary, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .args([
            "/etc/systemd/system/appliance-firstboot.service",
            "/etc/systemd/system/appliance-acme.service",
            "/etc/systemd/system/appliance-acme.timer",
        ])
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Warnings (unknown keys, bad values) are printed without failing.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("appliance-"))
        .collect();
    assert!(ours.is_empty(), "{stderr}");
}

/// The services holding the build's Jitsi secrets wait for firstboot and do not start before a
/// configuration was applied (state.json), so a failed first boot does not serve them.
#[test]
fn jitsi_services_wait_for_a_configured_instance() {
    for unit in ["prosody", "jicofo", "jitsi-videobridge2"] {
        let path = Path::new(UNITS).join(format!("{unit}.service.d/appliance-firstboot.conf"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.contains("\n[Unit]\n"), "{unit}");
        assert!(
            text.contains("\nAfter=appliance-firstboot.service\n"),
            "{unit}"
        );
        assert!(
            text.contains(&format!(
                "\nConditionPathExists=/{}\n",
                firstboot::state::STATE_FILE
            )),
            "{unit}"
        );
    }
}
