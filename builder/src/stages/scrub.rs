//! Scrub and audit: what must not ship in an image that many machines boot from.
//!
//! One table of rules drives both: scrub removes or empties what matches, and the audit, run
//! on the final tree (after late files), fails the build if anything still matches. The list
//! follows virt-sysprep's default operations and `cloud-init clean --logs`. Patterns are
//! matched without following symlinks, so a tree's absolute links never lead to host files.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Must not exist.
    Remove,
    /// Regular files may stay but must be empty.
    Empty,
}

struct Rule {
    /// Path in the tree; `*` and `?` match within one component; a last component `**`
    /// matches everything below, any other `**` any depth of directories (none included).
    pattern: &'static str,
    action: Action,
    why: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        pattern: "etc/machine-id",
        action: Action::Empty,
        why: "machine id (systemd makes one per machine at first boot)",
    },
    Rule {
        pattern: "etc/resolv.conf",
        action: Action::Empty,
        why: "name servers of the build host (a symlink to a resolver's file may stay)",
    },
    Rule {
        pattern: "etc/.resolv.conf.systemd-resolved.bak",
        action: Action::Remove,
        why: "name servers of the build host, kept by systemd-resolved's postinst",
    },
    Rule {
        pattern: "var/lib/dbus/machine-id",
        action: Action::Remove,
        why: "D-Bus machine id",
    },
    Rule {
        pattern: "etc/ssh/ssh_host_*",
        action: Action::Remove,
        why: "SSH host key",
    },
    Rule {
        pattern: "root/.ssh",
        action: Action::Remove,
        why: "SSH client keys and authorized_keys",
    },
    Rule {
        pattern: "home/*/.ssh",
        action: Action::Remove,
        why: "SSH client keys and authorized_keys",
    },
    Rule {
        pattern: "var/lib/cloud/*",
        action: Action::Remove,
        why: "cloud-init instance state",
    },
    Rule {
        pattern: "var/log/cloud-init*",
        action: Action::Remove,
        why: "cloud-init log",
    },
    Rule {
        pattern: "var/lib/apt/lists/*_*",
        action: Action::Remove,
        why: "apt package lists",
    },
    Rule {
        pattern: "var/cache/apt/*.bin",
        action: Action::Remove,
        why: "apt cache",
    },
    Rule {
        pattern: "var/cache/apt/archives/*.deb",
        action: Action::Remove,
        why: "downloaded package",
    },
    Rule {
        pattern: "root/.*_history",
        action: Action::Remove,
        why: "shell history",
    },
    Rule {
        pattern: "home/*/.*_history",
        action: Action::Remove,
        why: "shell history",
    },
    Rule {
        pattern: "root/.lesshst",
        action: Action::Remove,
        why: "less history",
    },
    Rule {
        pattern: "root/.viminfo",
        action: Action::Remove,
        why: "vim history",
    },
    Rule {
        pattern: "root/.wget-hsts",
        action: Action::Remove,
        why: "wget history",
    },
    Rule {
        pattern: "tmp/*",
        action: Action::Remove,
        why: "temporary file",
    },
    Rule {
        pattern: "var/tmp/*",
        action: Action::Remove,
        why: "temporary file",
    },
    Rule {
        pattern: "var/lib/systemd/random-seed",
        action: Action::Remove,
        why: "random seed shared by every instance",
    },
    Rule {
        pattern: "var/lib/systemd/credential.secret",
        action: Action::Remove,
        why: "systemd credential secret",
    },
    Rule {
        pattern: "var/log/journal/*",
        action: Action::Remove,
        why: "journal of the build",
    },
    Rule {
        pattern: "var/log/*.gz",
        action: Action::Remove,
        why: "rotated log",
    },
    Rule {
        pattern: "var/log/*.[0-9]",
        action: Action::Remove,
        why: "rotated log",
    },
    Rule {
        pattern: "var/log/*.old",
        action: Action::Remove,
        why: "rotated log",
    },
    Rule {
        pattern: "var/log/**",
        action: Action::Empty,
        why: "log of the build",
    },
    // The rest follows virt-sysprep's operations of the same names (libguestfs
    // sysprep/sysprep_operation_*.ml: crash-data, mail-spool, cron-spool, dhcp-client-state,
    // udev-persistent-net, backup-files, passwd-backups, package-manager-cache's
    // /var/cache/debconf), narrowed to files: the spool and state directories stay, with their
    // owners and modes (cron refuses a /var/spool/cron/crontabs it did not set up).
    Rule {
        pattern: "var/crash/*",
        action: Action::Remove,
        why: "crash dump",
    },
    Rule {
        pattern: "var/log/dump/*",
        action: Action::Remove,
        why: "crash dump",
    },
    Rule {
        pattern: "var/spool/mail/*",
        action: Action::Remove,
        why: "mail spool",
    },
    Rule {
        pattern: "var/mail/*",
        action: Action::Remove,
        why: "mail spool",
    },
    Rule {
        pattern: "var/spool/cron/crontabs/*",
        action: Action::Remove,
        why: "user crontab",
    },
    Rule {
        pattern: "var/spool/cron/atjobs/*",
        action: Action::Remove,
        why: "at job",
    },
    Rule {
        pattern: "var/spool/cron/atspool/*",
        action: Action::Remove,
        why: "at job output",
    },
    Rule {
        pattern: "var/lib/dhcp/*.leases",
        action: Action::Remove,
        why: "DHCP lease of the build host",
    },
    Rule {
        pattern: "var/lib/dhclient/*",
        action: Action::Remove,
        why: "DHCP lease of the build host",
    },
    Rule {
        pattern: "var/lib/NetworkManager/*.lease",
        action: Action::Remove,
        why: "DHCP lease of the build host",
    },
    Rule {
        pattern: "etc/udev/rules.d/70-persistent-net.rules",
        action: Action::Remove,
        why: "network interface names bound to the build's MAC addresses",
    },
    Rule {
        pattern: "etc/*-",
        action: Action::Remove,
        why: "backup of a user or group database",
    },
    Rule {
        pattern: "var/backups/*",
        action: Action::Remove,
        why: "backup of a user or group or package database",
    },
    Rule {
        pattern: "var/cache/debconf/*-old",
        action: Action::Remove,
        why: "backup of the debconf database",
    },
];

/// Editor and package backup files (virt-sysprep's backup-files), below each of these.
const BACKUP_DIRS: &[&str] = &["etc", "root", "srv", "tmp", "var"];
const BACKUP_NAMES: &[&str] = &["*~", "*.bak"];

/// `var/lib/cloud/seed` may hold a deliberately baked NoCloud seed; cloud-init clean keeps it.
const KEEP: &[&str] = &["var/lib/cloud/seed"];

/// A path that must not ship, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub why: String,
}

/// Paths (relative to `root`) matching `pattern`, never following symlinks.
fn matches(root: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let mut found = vec![PathBuf::new()];
    let parts: Vec<&str> = pattern.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for dir in &found {
            let host = root.join(dir);
            let is_real_dir = host.symlink_metadata().is_ok_and(|m| m.is_dir());
            if !is_real_dir {
                continue;
            }
            if *part == "**" {
                // Not following links: a directory's absolute link never leads to the host.
                for e in walkdir::WalkDir::new(&host)
                    .min_depth(if last { 1 } else { 0 })
                    .sort_by_file_name()
                {
                    let e = e.with_context(|| format!("walking {}", host.display()))?;
                    if last || e.file_type().is_dir() {
                        next.push(e.path().strip_prefix(root).unwrap().to_path_buf());
                    }
                }
                continue;
            }
            let pat = glob::Pattern::new(part).expect("scrub patterns are valid");
            let opts = glob::MatchOptions {
                require_literal_leading_dot: !part.starts_with('.'),
                ..Default::default()
            };
            let mut names: Vec<_> = std::fs::read_dir(&host)
                .with_context(|| format!("listing {}", host.display()))?
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|n| pat.matches_with(&n.to_string_lossy(), opts))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| !KEEP.iter().any(|k| p.starts_with(k)));
    Ok(found)
}

fn secret_pattern(p: &str) -> String {
    p.trim_start_matches('/').to_string()
}

/// Every rule as (pattern, action, why): [`RULES`], the backup files and the declared secrets.
fn all_rules(secrets: &[String]) -> Vec<(String, Action, &'static str)> {
    let fixed = RULES
        .iter()
        .map(|r| (r.pattern.to_string(), r.action, r.why));
    let backups = BACKUP_DIRS.iter().flat_map(|d| {
        BACKUP_NAMES
            .iter()
            .map(move |n| (format!("{d}/**/{n}"), Action::Remove, "backup file"))
    });
    let declared = secrets.iter().map(|s| {
        (
            secret_pattern(s),
            Action::Remove,
            "build-time secret declared by an overlay",
        )
    });
    fixed.chain(backups).chain(declared).collect()
}

/// What in the tree breaks a rule (or is a declared secret); empty means clean.
pub fn audit(root: &Path, secrets: &[String]) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for (pattern, action, why) in all_rules(secrets) {
        for rel in matches(root, &pattern)? {
            let meta = root.join(&rel).symlink_metadata()?;
            let bad = match action {
                Action::Remove => true,
                Action::Empty => meta.is_file() && meta.len() > 0,
            };
            if bad {
                out.push(Finding {
                    path: format!("/{}", rel.display()),
                    why: why.to_string(),
                });
            }
        }
    }
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// Removes and empties what the rules name, and the declared secrets. Returns how many paths
/// were changed.
pub fn scrub(root: &Path, secrets: &[String]) -> Result<usize> {
    let mut n = 0;
    for (pattern, action, _) in all_rules(secrets) {
        for rel in matches(root, &pattern)? {
            let p = root.join(&rel);
            let Ok(meta) = p.symlink_metadata() else {
                continue;
            };
            let ctx = || format!("scrubbing /{}", rel.display());
            match action {
                Action::Remove if meta.is_dir() => std::fs::remove_dir_all(&p).with_context(ctx)?,
                Action::Remove => std::fs::remove_file(&p).with_context(ctx)?,
                Action::Empty if meta.is_file() && meta.len() > 0 => {
                    // Truncate in place: owner, mode and any hard links stay as they are.
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .and_then(|f| f.set_len(0))
                        .with_context(ctx)?;
                }
                Action::Empty => continue,
            }
            n += 1;
        }
    }
    Ok(n)
}

/// Fails with one line listing what would ship.
pub fn require_clean(findings: &[Finding]) -> Result<()> {
    if findings.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = findings
        .iter()
        .take(5)
        .map(|f| format!("{} ({})", f.path, f.why))
        .collect();
    let more = if findings.len() > 5 {
        format!(" and {} more", findings.len() - 5)
    } else {
        String::new()
    };
    bail!(
        "audit: the image would ship {} path(s) that must not: {}{more}",
        findings.len(),
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn scrub_leaves_nothing_for_the_audit() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        put(r, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        put(r, "etc/ssh/ssh_host_ed25519_key", "KEY");
        put(r, "etc/ssh/ssh_host_ed25519_key.pub", "PUB");
        put(r, "etc/ssh/sshd_config", "keep");
        put(r, "etc/resolv.conf", "nameserver 10.0.0.1\n");
        put(
            r,
            "etc/.resolv.conf.systemd-resolved.bak",
            "nameserver 10.0.0.1\n",
        );
        put(r, "var/lib/cloud/instances/i-1/obj.pkl", "x");
        put(r, "var/lib/cloud/seed/nocloud/user-data", "keep");
        put(r, "var/log/cloud-init.log", "x");
        put(r, "var/log/apt/history.log", "x");
        put(r, "var/log/dpkg.log.1", "x");
        put(
            r,
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
            "x",
        );
        put(r, "var/lib/apt/lists/lock", "");
        put(r, "root/.bash_history", "ls");
        put(r, "home/u/.bash_history", "ls");
        put(r, "root/.ssh/authorized_keys", "ssh-ed25519 AAAA");
        put(r, "tmp/x/y", "x");
        put(r, "var/tmp/z", "x");
        put(r, "opt/token", "secret");
        // An absolute symlink to a host directory must not be followed.
        std::os::unix::fs::symlink("/etc", r.join("var/tmp-link")).unwrap();
        std::os::unix::fs::symlink("/", r.join("home/evil")).unwrap();

        let secrets = vec!["/opt/token".to_string()];
        let before = audit(r, &secrets).unwrap();
        let paths: Vec<&str> = before.iter().map(|f| f.path.as_str()).collect();
        for want in [
            "/etc/machine-id",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/resolv.conf",
            "/etc/.resolv.conf.systemd-resolved.bak",
            "/var/lib/cloud/instances",
            "/var/log/cloud-init.log",
            "/var/log/apt/history.log",
            "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
            "/root/.bash_history",
            "/home/u/.bash_history",
            "/root/.ssh",
            "/tmp/x",
            "/var/tmp/z",
            "/opt/token",
        ] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
        assert!(!paths
            .iter()
            .any(|p| p.contains("seed") || p.contains("sshd_config") || p.ends_with("lock")));
        assert!(require_clean(&before)
            .unwrap_err()
            .to_string()
            .starts_with("audit: the image would ship "));

        scrub(r, &secrets).unwrap();
        assert_eq!(audit(r, &secrets).unwrap(), vec![]);
        assert_eq!(std::fs::read(r.join("etc/machine-id")).unwrap(), b"");
        assert!(r.join("var/log/apt/history.log").exists());
        assert!(r.join("var/lib/cloud/seed/nocloud/user-data").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(Path::new("/etc/passwd").exists());
        require_clean(&[]).unwrap();

        // Planted after scrub: the audit names it.
        put(r, "etc/ssh/ssh_host_rsa_key", "KEY");
        let after = audit(r, &secrets).unwrap();
        assert_eq!(
            require_clean(&after).unwrap_err().to_string(),
            "audit: the image would ship 1 path(s) that must not: /etc/ssh/ssh_host_rsa_key (SSH host key)"
        );
    }

    #[test]
    fn scrub_removes_what_virt_sysprep_does_and_keeps_the_directories() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let gone = [
            "var/crash/_usr_bin_node.0.crash",
            "var/log/dump/vmcore",
            "var/spool/mail/root",
            "var/mail/admin",
            "var/spool/cron/crontabs/root",
            "var/spool/cron/atjobs/a0000101a2b3c",
            "var/lib/dhcp/dhclient.eth0.leases",
            "var/lib/dhclient/dhclient--eth0.lease",
            "var/lib/NetworkManager/internal-0-ens3.lease",
            "etc/udev/rules.d/70-persistent-net.rules",
            "etc/passwd-",
            "etc/shadow-",
            "etc/group-",
            "etc/gshadow-",
            "etc/nginx/sites-available/default~",
            "etc/ssh/sshd_config.bak",
            "root/notes.bak",
            "srv/www/index.html~",
            "var/lib/mongodb/old/mongod.conf.bak",
            "var/backups/passwd.bak",
            "var/backups/dpkg.status.0",
            "var/cache/debconf/config.dat-old",
            "var/cache/debconf/templates.dat-old",
        ];
        let kept = [
            "etc/passwd",
            "etc/shadow",
            "etc/group",
            "etc/gshadow",
            "etc/ssh/sshd_config",
            "etc/udev/rules.d/80-appliance.rules",
            "var/lib/dhcp/dhclient.conf.keep",
            "var/lib/NetworkManager/NetworkManager.state",
            "var/cache/debconf/config.dat",
            "var/cache/debconf/templates.dat",
            "var/spool/cron/atjobs/.SEQ",
            "usr/share/doc/x/changelog~",
            "var/lib/cloud/seed/nocloud/user-data.bak",
        ];
        for p in gone.iter().chain(&kept) {
            put(r, p, "x");
        }
        let found: Vec<String> = audit(r, &[]).unwrap().into_iter().map(|f| f.path).collect();
        for p in gone {
            assert!(found.contains(&format!("/{p}")), "/{p} not in {found:?}");
        }
        scrub(r, &[]).unwrap();
        assert_eq!(audit(r, &[]).unwrap(), vec![]);
        for p in gone {
            assert!(r.join(p).symlink_metadata().is_err(), "{p} is left");
        }
        for p in kept {
            assert_eq!(std::fs::read(r.join(p)).unwrap(), b"x", "{p}");
        }
        for dir in [
            "var/crash",
            "var/log/dump",
            "var/spool/mail",
            "var/mail",
            "var/spool/cron/crontabs",
            "var/lib/dhcp",
            "var/lib/dhclient",
            "var/backups",
            "etc/udev/rules.d",
            "srv/www",
        ] {
            assert!(r.join(dir).is_dir(), "{dir} is gone");
        }
    }
}
