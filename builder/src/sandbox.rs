//! The isolation of one build step, set up in the step's child between fork and exec.
//!
//! Every step leads its own process group and gets its own mount, PID, UTS and IPC namespaces.
//! Three processes stand between the builder and the step's program:
//! - the *outer* process, in the builder's PID namespace: the child the builder waits for. It
//!   waits for the init below and exits as it did.
//! - the *init*, PID 1 of the step's namespace: it reaps orphans and exits as soon as the
//!   step's main process ends. The kernel then kills every process left in the namespace,
//!   daemons that called setsid() or forked twice included, and waits for them; so when the
//!   builder's wait returns, nothing of the step runs any more. The init dies with the outer
//!   process (parent-death signal), so Ctrl-C or a `kill` of the group ends it all too.
//! - the step itself.
//!
//! Steps in a chroot (provisioning: overlay scripts and the apt, dpkg and npm scripts they run)
//! also get, all in their mount namespace:
//! - the tree as the namespace's root by pivot_root(2), the host's root detached: unlike a
//!   chroot(2), no chroot-and-walk-up with CAP_SYS_CHROOT leads out of it;
//! - a fresh /proc of the step's PID namespace, so /proc/1 is the step's init (not dumpable:
//!   its copy of the builder's memory, its environment and /proc/1/root are out of the step's
//!   reach, and /proc/1/root is the tree anyway, never the host's root); /proc/sys,
//!   /proc/sysrq-trigger, /proc/irq, /proc/bus and /proc/fs read-only, /proc/kcore,
//!   /proc/keys and /proc/timer_list hidden;
//! - no descriptor of the builder's but stdin, stdout and stderr after the exec;
//! - a fresh sysfs, read-only, without the host's submounts (efivarfs, cgroups);
//! - a minimal /dev on a tmpfs: null, zero, full, random, urandom, tty, a devpts instance of
//!   its own with ptmx, shm, and the fd, stdin, stdout, stderr links; no disk, loop or kvm
//!   device of the host;
//! - only the capabilities in [`KEPT_CAPS`] (those Docker gives a container by default, less
//!   CAP_MKNOD and CAP_NET_RAW): what dpkg, maintainer scripts and package managers need to
//!   own, chmod, setcap and switch users in the tree. Without CAP_SYS_ADMIN nothing can be
//!   mounted, remounted writable or unmounted; without CAP_MKNOD no device node made; without
//!   CAP_NET_ADMIN and CAP_NET_RAW the host's network (the step shares it, to download) can be
//!   neither reconfigured nor sniffed; CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_BOOT,
//!   CAP_SYS_TIME and CAP_SYS_PTRACE are gone too.
//!
//! Steps outside a chroot (debootstrap, which mounts and makes device nodes in its target;
//! the commands that make late files) keep the host's /proc, /dev and capabilities, and get
//! the namespaces and the clean end.

use crate::util::partial;
use anyhow::{anyhow, Context, Result};
use std::ffi::CString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A directory of the host bound into a step's chroot.
#[derive(Clone, Debug)]
pub struct Bind {
    pub source: PathBuf,
    /// Relative to the tree's root; made by [`crate::stages::provision::Chroot::prepare`].
    pub target: PathBuf,
    pub read_only: bool,
}

/// Capabilities a chroot step keeps, by their numbers in linux/capability.h.
const KEPT: &[(u32, &str)] = &[
    (0, "CHOWN"),
    (1, "DAC_OVERRIDE"),
    (3, "FOWNER"),
    (4, "FSETID"),
    (5, "KILL"),
    (6, "SETGID"),
    (7, "SETUID"),
    (8, "SETPCAP"),
    (10, "NET_BIND_SERVICE"),
    (18, "SYS_CHROOT"),
    (29, "AUDIT_WRITE"),
    (31, "SETFCAP"),
];

/// `KEPT` as a capability mask (the bounding set `CapBnd` of /proc/PID/status).
pub const KEPT_CAPS: u64 = {
    let mut mask = 0;
    let mut i = 0;
    while i < KEPT.len() {
        mask |= 1 << KEPT[i].0;
        i += 1;
    }
    mask
};

/// Character devices of the minimal /dev: (name, major, minor), as devices.txt numbers them.
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
/// (name, target) of the minimal /dev's links.
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];
/// Below /proc: what reaches the host's kernel, read-only ...
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// ... and what would show its memory, keys or timers, hidden under /dev/null.
const PROC_HIDDEN: &[&str] = &["kcore", "keys", "timer_list"];

/// Paths prepared before fork: nothing may allocate between fork and exec.
struct ChrootPaths {
    root: CString,
    proc_: CString,
    sys: CString,
    dev: CString,
    dev_pts: CString,
    dev_shm: CString,
    dev_null: CString,
    devices: Vec<(CString, u32, u32)>,
    links: Vec<(CString, CString)>,
    proc_read_only: Vec<CString>,
    proc_hidden: Vec<CString>,
    /// (source, target, read-only)
    binds: Vec<(CString, CString, bool)>,
}

/// How one step is isolated; made before the fork, entered in the child by [`Sandbox::enter`].
pub struct Sandbox {
    chroot: Option<ChrootPaths>,
}

fn cstr(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{} contains a NUL", p.display()))
}

fn under(dir: &Path, names: &[&str]) -> Result<Vec<CString>> {
    names.iter().map(|n| cstr(&dir.join(n))).collect()
}

impl Sandbox {
    /// The namespaces only, for a step outside a chroot.
    pub fn plain() -> Sandbox {
        Sandbox { chroot: None }
    }

    /// A step in the tree at `root`, with `binds` from the host.
    pub fn chroot(root: &Path, binds: &[Bind]) -> Result<Sandbox> {
        let root = root
            .canonicalize()
            .with_context(|| format!("finding {}", root.display()))?;
        let mut bound = Vec::new();
        for b in binds {
            let source = b
                .source
                .canonicalize()
                .with_context(|| format!("finding {}", b.source.display()))?;
            let target = crate::util::rootpath::resolve(&root, &b.target)?;
            bound.push((cstr(&source)?, cstr(&target)?, b.read_only));
        }
        let dev = root.join("dev");
        let proc_ = root.join("proc");
        Ok(Sandbox {
            chroot: Some(ChrootPaths {
                devices: DEVICES
                    .iter()
                    .map(|(n, ma, mi)| Ok((cstr(&dev.join(n))?, *ma, *mi)))
                    .collect::<Result<_>>()?,
                links: DEV_LINKS
                    .iter()
                    .map(|(n, t)| Ok((cstr(&dev.join(n))?, cstr(Path::new(t))?)))
                    .collect::<Result<_>>()?,
                proc_read_only: under(&proc_, PROC_READ_ONLY)?,
                proc_hidden: under(&proc_, PROC_HIDDEN)?,
                dev_pts: cstr(&dev.join("pts"))?,
                dev_shm: cstr(&dev.join("shm"))?,
                dev_null: cstr(&dev.join("null"))?,
                dev: cstr(&dev)?,
                proc_: cstr(&proc_)?,
                sys: cstr(&root.join("sys"))?,
                root: cstr(&root)?,
                binds: bound,
            }),
        })
    }

    /// In the child, between fork and exec: the namespaces, the init and, for a chroot, its
    /// mounts and capabilities. Returns in the process that is to exec the step; the outer
    /// process and the init never return. Only async-signal-safe calls.
    pub fn enter(&self) -> io::Result<()> {
        use libc::{CLONE_NEWIPC, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS, MS_PRIVATE, MS_REC};
        // SAFETY: plain system calls on data prepared before the fork.
        unsafe {
            check(libc::setpgid(0, 0))?;
            // The outer process and the init never exec, so they still have the builder's
            // Ctrl-C handlers: the defaults instead, so that a signal ends them.
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(sig, libc::SIG_DFL);
            }
            check(libc::unshare(
                CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC,
            ))?;
            mount(c"none", c"/", None, MS_REC | MS_PRIVATE, None)?;
            // Open in the outer process only: the init learns from its end whether the outer
            // process died before the init could ask to die with it.
            let mut alive = [0; 2];
            check(libc::pipe2(alive.as_mut_ptr(), libc::O_CLOEXEC))?;
            let init = check_pid(libc::fork())?;
            if init != 0 {
                libc::close(alive[0]);
                outer(init, alive[1]);
            }
            libc::close(alive[1]);
            check(libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
            ))?;
            let mut p = libc::pollfd {
                fd: alive[0],
                events: libc::POLLIN,
                revents: 0,
            };
            if libc::poll(&mut p, 1, 0) != 0 {
                libc::_exit(1);
            }
            libc::close(alive[0]);
            // The init is a copy of the builder's memory: the step, root with the same
            // capabilities, must not ptrace it or read its /proc/1/mem, environ or fds. (The
            // step execs, which makes it dumpable again.)
            check(libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong))?;
            if let Some(c) = &self.chroot {
                c.mount()?;
                drop_capabilities()?;
            }
            let step = check_pid(libc::fork())?;
            if step != 0 {
                init_loop(step);
            }
            // Whatever descriptor the builder inherited without close-on-exec (a directory
            // of the host would lead out of the tree) closes when the step execs; the one
            // through which `Command::spawn` learns of a failed exec still works until then.
            if libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            ) != 0
            {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                check(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim))?;
                for fd in 3..lim.rlim_cur.min(1 << 20) as libc::c_int {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
        }
        Ok(())
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn check_pid(pid: libc::pid_t) -> io::Result<libc::pid_t> {
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

/// mount(2); `fstype` and `data` optional.
fn mount(
    source: &std::ffi::CStr,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let opt = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: C strings or null pointers.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            opt(fstype),
            flags,
            opt(data).cast(),
        )
    })
}

/// Binds `source` on `target`, read-only if asked; a `target` that does not exist is skipped
/// when `optional`.
fn bind(source: &CString, target: &CString, read_only: bool, optional: bool) -> io::Result<()> {
    use libc::{MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT};
    match mount(source, target, None, MS_BIND | MS_REC, None) {
        Err(e) if optional && e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        r => r?,
    }
    if read_only {
        mount(
            c"none",
            target,
            None,
            MS_REMOUNT | MS_BIND | MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

impl ChrootPaths {
    /// In the init: the chroot's file systems, then the tree as the namespace's root.
    fn mount(&self) -> io::Result<()> {
        use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
        // SAFETY: system calls on C strings.
        unsafe {
            // Device nodes and /dev/shm get exactly the modes asked for.
            let umask = libc::umask(0);
            // The tree becomes a mount of its own, the root the step gets by pivot_root below.
            mount(
                &self.root,
                &self.root,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            // Mounted from inside the PID namespace: it shows that namespace's processes.
            mount(
                c"proc",
                &self.proc_,
                Some(c"proc"),
                MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            )?;
            for p in &self.proc_read_only {
                bind(p, p, true, true)?;
            }
            mount(
                c"sysfs",
                &self.sys,
                Some(c"sysfs"),
                MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                None,
            )?;
            mount(
                c"tmpfs",
                &self.dev,
                Some(c"tmpfs"),
                MS_NOSUID | MS_NOEXEC,
                Some(c"mode=0755,size=4m"),
            )?;
            for (path, major, minor) in &self.devices {
                let dev = libc::makedev(*major, *minor);
                check(libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o666, dev))?;
            }
            for (path, target) in &self.links {
                check(libc::symlink(target.as_ptr(), path.as_ptr()))?;
            }
            check(libc::mkdir(self.dev_pts.as_ptr(), 0o755))?;
            // A devpts of its own (gid 5 is tty in Debian and Ubuntu): the host's ptys stay
            // out of reach.
            mount(
                c"devpts",
                &self.dev_pts,
                Some(c"devpts"),
                MS_NOSUID | MS_NOEXEC,
                Some(c"newinstance,ptmxmode=0666,mode=0620,gid=5"),
            )?;
            check(libc::mkdir(self.dev_shm.as_ptr(), 0o1777))?;
            mount(
                c"tmpfs",
                &self.dev_shm,
                Some(c"tmpfs"),
                MS_NOSUID | MS_NODEV,
                Some(c"mode=1777"),
            )?;
            for p in &self.proc_hidden {
                bind(&self.dev_null, p, true, true)?;
            }
            for (src, dst, ro) in &self.binds {
                bind(src, dst, *ro, false)?;
            }
            libc::umask(umask);
            // pivot_root, not chroot: a chroot(2) keeps the host's tree in the namespace, and
            // a root process with CAP_SYS_CHROOT leaves it by chroot-ing into a subdirectory
            // and walking up with "..". Here the host's root is detached from the namespace
            // (pivot_root(2)'s `pivot_root(".", ".")` then a lazy unmount of the old root), so
            // no path leads to it.
            check(libc::chdir(self.root.as_ptr()))?;
            check(
                libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
            )?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
        }
        Ok(())
    }
}

/// linux/capability.h: _LINUX_CAPABILITY_VERSION_3 and its structures (libc has no capset).
const CAP_VERSION_3: u32 = 0x2008_0522;
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Limits this process and whatever it execs to [`KEPT_CAPS`]: the bounding set (what an exec
/// as root may get), the permitted and effective sets, and no inheritable or ambient ones.
fn drop_capabilities() -> io::Result<()> {
    // SAFETY: prctl and capget/capset with structures laid out as the kernel's.
    unsafe {
        for cap in 0..64 {
            if KEPT_CAPS & (1 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) != 0
            {
                // Past the kernel's last capability.
                if io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
                    return Err(io::Error::last_os_error());
                }
                break;
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        );
        let mut header = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        for (i, d) in data.iter_mut().enumerate() {
            let kept = (KEPT_CAPS >> (32 * i)) as u32;
            d.permitted &= kept;
            d.effective &= kept;
            d.inheritable = 0;
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for `pid`; its wait status.
fn wait_for(pid: libc::pid_t) -> libc::c_int {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a pointer to a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return status;
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 1 << 8;
        }
    }
}

/// Closes every descriptor from 3 on but `keep`: the builder's, and above all its end of the
/// pipe through which `Command::spawn` learns that the step has started.
fn close_from_3(keep: Option<libc::c_int>) {
    // SAFETY: close_range(2); errors (an empty range) do not matter.
    unsafe {
        match keep {
            Some(k) => {
                libc::close_range(3, (k - 1) as libc::c_uint, 0);
                libc::close_range((k + 1) as libc::c_uint, libc::c_uint::MAX, 0);
            }
            None => {
                libc::close_range(3, libc::c_uint::MAX, 0);
            }
        }
    }
}

/// The outer process: waits for the init and ends as it did.
fn outer(init: libc::pid_t, alive: libc::c_int) -> ! {
    close_from_3(Some(alive));
    let status = wait_for(init);
    // SAFETY: ending this process; no core dump of the builder's memory.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

/// The init: reaps whatever ends until the step does, then exits with the step's status (a
/// step killed by signal N: 128 + N, as a shell reports it; PID 1 cannot kill itself).
fn init_loop(step: libc::pid_t) -> ! {
    close_from_3(None);
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with a pointer to a local; _exit ends the namespace.
        unsafe {
            let r = libc::waitpid(-1, &mut status, 0);
            if r == step {
                if libc::WIFSIGNALED(status) {
                    libc::_exit(128 + libc::WTERMSIG(status));
                }
                libc::_exit(libc::WEXITSTATUS(status));
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(1);
            }
        }
    }
}

/// The PATH a step sees.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a provisioning step sees: nothing of the host's but a proxy.
pub fn base_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("PATH", PATH),
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
    /// Bound into the chroot for this step.
    pub binds: &'a [Bind],
    /// The working directory of a step outside a chroot (default: the builder's).
    pub cwd: Option<&'a Path>,
    pub log: &'a Path,
}

/// A step that ran and failed; its log says why (the caller may read it: see
/// [`crate::inputs::explain`]).
#[derive(Debug, thiserror::Error)]
#[error("{what} failed ({status}); the lines above end its log {}", log.display())]
pub struct StepFailed {
    pub what: String,
    pub status: std::process::ExitStatus,
    pub log: PathBuf,
}

/// Runs a step to completion. On failure, prints the last lines of its log (prefixed, never
/// starting with "error:") and fails with one line naming the step and the log.
pub fn run(step: &Step) -> Result<()> {
    let log = std::fs::File::create(step.log)
        .with_context(|| format!("creating the log {}", step.log.display()))?;
    let sandbox = match step.chroot {
        Some(root) => Sandbox::chroot(root, step.binds)?,
        None => Sandbox::plain(),
    };
    let mut cmd = Command::new(step.program);
    cmd.args(&step.args)
        .env_clear()
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    if let (Some(dir), None) = (step.cwd, step.chroot) {
        cmd.current_dir(dir);
    }
    crate::util::progress::show_command(&cmd);
    // SAFETY: `enter` only makes async-signal-safe system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || sandbox.enter());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: starting {}", step.what, step.program))?;
    let pid = child.id();
    partial::register_group(pid);
    // Returns once the step's init has exited, and with it every process of the step's PID
    // namespace (see [`crate::sandbox`]).
    let status = child.wait();
    // Nothing of the group can be left outside the namespace but, should the outer process
    // have been killed alone, this ends its init too.
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
        return Err(StepFailed {
            what: step.what.clone(),
            status,
            log: step.log.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            binds: &[],
            cwd: None,
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

    /// Processes of the host whose command line contains `marker`: (pid, command line).
    fn running(marker: &str) -> Vec<(i32, String)> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let pid = e.file_name().to_str()?.parse().ok()?;
                let c = std::fs::read(e.path().join("cmdline")).ok()?;
                Some((pid, String::from_utf8_lossy(&c).replace('\0', " ")))
            })
            .filter(|(_, c)| c.contains(marker))
            .collect()
    }

    #[test]
    fn nothing_a_step_starts_outlives_it() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("s.log");
        let marker = format!("appliance-detached-{}", std::process::id());
        // A daemon in a session of its own, and one forked twice: neither is in the step's
        // process group.
        let script = format!(
            "setsid sh -c 'sleep 1000; : {marker}-setsid' >/dev/null 2>&1 </dev/null &\n\
             (sh -c 'sleep 1000; : {marker}-forked' >/dev/null 2>&1 </dev/null &)\n\
             sleep 0.5; echo started"
        );
        let step = Step {
            what: "daemonising step".into(),
            program: "/bin/sh",
            args: vec!["-c".into(), script],
            env: base_env(),
            chroot: None,
            binds: &[],
            cwd: None,
            log: &log,
        };
        run(&step).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "started\n");
        let left = running(&marker);
        for (pid, _) in &left {
            // Stopped here when the test fails, so that none outlives the test either.
            // SAFETY: kill(2) of a process found by the marker this test made.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        assert!(left.is_empty(), "left running: {left:?}");
    }

    #[test]
    fn the_kept_capabilities_are_dockers_less_mknod_and_net_raw() {
        // Docker's default bounding set, 0xa80425fb, less CAP_MKNOD (27) and CAP_NET_RAW (13).
        assert_eq!(KEPT_CAPS, 0xa80425fb & !(1 << 27) & !(1 << 13));
        assert_eq!(format!("{KEPT_CAPS:016x}"), "00000000a00405fb");
    }
}
