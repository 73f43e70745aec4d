//! Running build steps that change a tree: overlay `provision.sh` scripts in a chroot, and
//! debootstrap.
//!
//! Every step runs in its own process group and in a private mount namespace. The chroot's
//! /proc, /sys, /dev and /dev/pts are mounted inside that namespace only, so they are never
//! visible to the host and vanish with the step's last process: no error, Ctrl-C or even
//! `kill -9` of the builder can leave a mount behind, and removing a work tree can never reach
//! the host's /dev. The tree gets a `policy-rc.d` that stops services from starting, the host's
//! resolv.conf, and apt settings for unattended runs; all are restored afterwards.
//!
//! Each step writes its output to its own log file. A failing step prints the log's last lines
//! and its path, and the error names the step.

use crate::partial;
use crate::rootpath;
use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const POLICY_RC_D: &str = "#!/bin/sh\n# Installed by the appliance builder while provisioning: no service starts.\nexit 101\n";
const APT_CONF: &str = "// Installed by the appliance builder while provisioning.\n\
Dpkg::Options { \"--force-confdef\"; \"--force-confold\"; };\n\
APT::Get::Assume-Yes \"true\";\n\
Dpkg::Use-Pty \"0\";\n";
const SAVED: &str = ".appliance-build-saved";

/// The chroot's temporary files, put in place by [`Chroot::prepare`] and taken out by
/// [`Chroot::restore`] (or on drop).
pub struct Chroot {
    root: PathBuf,
    /// (path in the tree, whether an original was saved beside it)
    placed: Vec<(PathBuf, bool)>,
    restored: bool,
}

impl Chroot {
    pub fn prepare(root: &Path) -> Result<Chroot> {
        let mut c = Chroot {
            root: root.to_path_buf(),
            placed: Vec::new(),
            restored: false,
        };
        for d in ["proc", "sys", "dev", "dev/pts", "run", "tmp"] {
            let p = rootpath::resolve(root, Path::new(d))?;
            if !p.is_dir() {
                std::fs::create_dir_all(&p)
                    .with_context(|| format!("creating /{d} in the tree"))?;
            }
        }
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        c.place("usr/sbin/policy-rc.d", POLICY_RC_D.as_bytes(), 0o755)?;
        c.place("etc/resolv.conf", &resolv, 0o644)?;
        if rootpath::resolve(root, Path::new("etc/apt/apt.conf.d"))?.is_dir() {
            c.place(
                "etc/apt/apt.conf.d/00appliance-build",
                APT_CONF.as_bytes(),
                0o644,
            )?;
        }
        Ok(c)
    }

    /// Writes `data` at `rel`, moving whatever was there (file or symlink) aside.
    fn place(&mut self, rel: &str, data: &[u8], mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let p = rootpath::resolve(&self.root, Path::new(rel))?;
        let saved = p.symlink_metadata().is_ok();
        if saved {
            std::fs::rename(&p, saved_name(&p))
                .with_context(|| format!("moving /{rel} aside in the tree"))?;
        }
        self.placed.push((p.clone(), saved));
        std::fs::write(&p, data).with_context(|| format!("writing /{rel} in the tree"))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Puts back what [`Chroot::prepare`] moved aside.
    pub fn restore(mut self) -> Result<()> {
        self.restore_all()
    }

    fn restore_all(&mut self) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        for (p, saved) in self.placed.drain(..).rev() {
            let _ = std::fs::remove_file(&p);
            if saved {
                std::fs::rename(saved_name(&p), &p)
                    .with_context(|| format!("restoring {}", p.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        let _ = self.restore_all();
    }
}

fn saved_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(SAVED);
    PathBuf::from(s)
}

/// The environment a provisioning step sees: nothing of the host's but a proxy.
pub fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("HOME", "/root"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
        ("TERM", "dumb"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for k in [
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.to_string(), v));
        }
    }
    env
}

/// One isolated step.
pub struct Step<'a> {
    /// What the step is, for messages ("provision.sh of overlay 'ufw'").
    pub what: String,
    pub program: &'a str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run inside this tree (chroot with /proc, /sys, /dev, /dev/pts).
    pub chroot: Option<&'a Path>,
    pub log: &'a Path,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{} contains a NUL", p.display()))
}

/// Paths prepared before fork: pre_exec must not allocate.
struct Mounts {
    root: CString,
    proc_: CString,
    proc_sys: CString,
    sys: CString,
    dev: CString,
}

fn io_check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// In the child, between fork and exec: own process group, private mount namespace, and the
/// chroot with its mounts. Only async-signal-safe calls.
fn enter(m: Option<&Mounts>) -> std::io::Result<()> {
    // SAFETY: plain system calls on C strings prepared before the fork.
    unsafe {
        io_check(libc::setpgid(0, 0))?;
        io_check(libc::unshare(libc::CLONE_NEWNS))?;
        io_check(libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if let Some(m) = m {
            io_check(libc::mount(
                c"proc".as_ptr(),
                m.proc_.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            for (src, dst) in [(c"/sys", &m.sys), (c"/dev", &m.dev)] {
                // Recursive: /dev/pts, /dev/shm and /dev/mqueue come along.
                io_check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
            }
            // The kernel is the host's: a postinst's `sysctl --system` or `udevadm trigger`
            // must not reach it, so /proc/sys and /sys are read-only.
            for dir in [&m.proc_sys, &m.sys] {
                if dir == &m.proc_sys {
                    io_check(libc::mount(
                        dir.as_ptr(),
                        dir.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ))?;
                }
                io_check(libc::mount(
                    std::ptr::null(),
                    dir.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                    std::ptr::null(),
                ))?;
            }
            io_check(libc::chroot(m.root.as_ptr()))?;
            io_check(libc::chdir(c"/".as_ptr()))?;
        }
    }
    Ok(())
}

/// Runs a step to completion. On failure, prints the last lines of its log (prefixed, never
/// starting with "error:") and fails with one line naming the step and the log.
pub fn run(step: &Step) -> Result<()> {
    let log = std::fs::File::create(step.log)
        .with_context(|| format!("creating the log {}", step.log.display()))?;
    let mounts = match step.chroot {
        Some(root) => {
            let root = root
                .canonicalize()
                .with_context(|| format!("finding {}", root.display()))?;
            Some(Mounts {
                proc_: cstr(&root.join("proc"))?,
                proc_sys: cstr(&root.join("proc/sys"))?,
                sys: cstr(&root.join("sys"))?,
                dev: cstr(&root.join("dev"))?,
                root: cstr(&root)?,
            })
        }
        None => None,
    };
    let mut cmd = Command::new(step.program);
    cmd.args(&step.args)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    // SAFETY: `enter` only makes system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || enter(mounts.as_ref()));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: starting {}", step.what, step.program))?;
    let pid = child.id();
    partial::register_group(pid);
    let status = child.wait();
    // Whatever the step left running in its group (a daemon a postinst started anyway) goes
    // now, which also ends the mount namespace.
    // SAFETY: kill(2) on the process group this step leads.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
    partial::unregister_group(pid);
    let status = status.with_context(|| format!("{}: waiting for it", step.what))?;
    if !status.success() {
        let text = std::fs::read_to_string(step.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("  | {l}");
        }
        bail!(
            "{} failed ({status}); the lines above end its log {}",
            step.what,
            step.log.display()
        );
    }
    Ok(())
}

/// Runs an overlay's provision.sh in the tree (prepared with [`Chroot::prepare`]).
pub fn run_script(
    tree: &Path,
    overlay: &str,
    script: &Path,
    env: Vec<(String, String)>,
    log: &Path,
) -> Result<()> {
    let dir = rootpath::resolve(tree, Path::new("run/appliance-build"))?;
    std::fs::create_dir_all(&dir).context("creating /run/appliance-build in the tree")?;
    let inside = format!("/run/appliance-build/{overlay}.sh");
    let copy = dir.join(format!("{overlay}.sh"));
    std::fs::copy(script, &copy).with_context(|| format!("copying {}", script.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    let result = run(&Step {
        what: format!("provision.sh of overlay '{overlay}'"),
        program: &inside,
        args: Vec::new(),
        env,
        chroot: Some(tree),
        log,
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_files_are_placed_and_restored() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(r.join("etc/apt/apt.conf.d")).unwrap();
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            r.join("etc/resolv.conf"),
        )
        .unwrap();
        let c = Chroot::prepare(r).unwrap();
        assert_eq!(
            std::fs::read_to_string(r.join("usr/sbin/policy-rc.d")).unwrap(),
            POLICY_RC_D
        );
        assert!(r
            .join("etc/resolv.conf")
            .symlink_metadata()
            .unwrap()
            .is_file());
        assert!(r.join("etc/apt/apt.conf.d/00appliance-build").exists());
        c.restore().unwrap();
        assert!(!r.join("usr/sbin/policy-rc.d").exists());
        assert!(!r.join("etc/apt/apt.conf.d/00appliance-build").exists());
        assert_eq!(
            std::fs::read_link(r.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/systemd/resolve/stub-resolv.conf")
        );
        let names: Vec<_> = std::fs::read_dir(r.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            !names.iter().any(|n| n.to_string_lossy().contains(SAVED)),
            "{names:?}"
        );
    }

    #[test]
    fn steps_log_and_fail_with_one_line() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("s.log");
        let step = |script: &str| Step {
            what: "test step".into(),
            program: "/bin/sh",
            args: vec!["-c".into(), script.into()],
            env: base_env(),
            chroot: None,
            log: &log,
        };
        run(&step("echo hello; echo $DEBIAN_FRONTEND")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "hello\nnoninteractive\n"
        );
        let e = run(&step("echo boom >&2; exit 3")).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "test step failed (exit status: 3); the lines above end its log {}",
                log.display()
            )
        );
        // The step's mounts are its own: a tmpfs mounted by the step is not visible here.
        let m = d.path().join("m");
        std::fs::create_dir(&m).unwrap();
        run(&step(&format!(
            "mount -t tmpfs none {} && touch {}/x",
            m.display(),
            m.display()
        )))
        .unwrap();
        assert!(partial::mounts_below(&m).is_empty());
        assert!(!m.join("x").exists());
    }
}
