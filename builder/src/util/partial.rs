//! Artifacts under construction.
//!
//! Every output is written under a hidden temporary name beside its final name and renamed only
//! when the whole run has succeeded, so an interrupted or failed run leaves no partial artifact
//! and never replaces a good one. Temporary paths and child processes are kept in a registry so
//! that Ctrl-C (SIGINT/SIGTERM) can remove the former and stop the latter before exiting.

use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Temporary paths and child processes to clean up on Ctrl-C.
#[derive(Default)]
struct Registry {
    paths: Mutex<Vec<PathBuf>>,
    /// Process ids; negative for a whole process group.
    children: Mutex<Vec<i32>>,
    /// Set once Ctrl-C has removed the paths: nothing may be created after that.
    abandoned: AtomicBool,
}

static REGISTRY: Registry = Registry {
    paths: Mutex::new(Vec::new()),
    children: Mutex::new(Vec::new()),
    abandoned: AtomicBool::new(false),
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    /// Stops the children and removes the paths.
    fn abandon(&self) {
        for pid in lock(&self.children).drain(..) {
            // SAFETY: kill(2) with a pid (or group) we spawned; at worst it is already gone.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let mut paths = lock(&self.paths);
        // Under the lock, so that no thread creates a path after this (see `Registry::create`).
        self.abandoned.store(true, Ordering::SeqCst);
        for path in paths.drain(..) {
            remove_path(&path);
        }
    }

    /// Runs `make`, which creates a path (in `place`) and returns it, and registers that path,
    /// both while holding the lock: Ctrl-C (which takes the same lock) then sees either no path
    /// yet, and refuses to let one be made, or a path that exists and is registered; never one
    /// made but not yet removable.
    fn create<T>(&self, place: &Path, make: impl FnOnce() -> Result<(T, PathBuf)>) -> Result<T> {
        let mut paths = lock(&self.paths);
        if self.abandoned.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted: not creating anything in {}", place.display());
        }
        let (made, path) = make()?;
        paths.push(path);
        Ok(made)
    }
}

/// [`Registry::create`] in the registry Ctrl-C cleans.
fn create_registered<T>(place: &Path, make: impl FnOnce() -> Result<(T, PathBuf)>) -> Result<T> {
    REGISTRY.create(place, make)
}

pub fn register_child(pid: u32) {
    lock(&REGISTRY.children).push(pid as i32);
}

pub fn unregister_child(pid: u32) {
    lock(&REGISTRY.children).retain(|p| *p != pid as i32);
}

/// Registers a process group (a child that leads its own group, as provisioning steps do).
pub fn register_group(pgid: u32) {
    lock(&REGISTRY.children).push(-(pgid as i32));
}

pub fn unregister_group(pgid: u32) {
    lock(&REGISTRY.children).retain(|p| *p != -(pgid as i32));
}

fn unregister(path: &Path) {
    lock(&REGISTRY.paths).retain(|p| p != path);
}

fn remove_path(path: &Path) {
    if path.is_dir() {
        // Never descend into a mounted file system (a host /dev bound into a tree would lose
        // its device nodes): detach whatever is mounted below first, and keep the directory if
        // anything stays mounted.
        if unmount_below(path) {
            let _ = std::fs::remove_dir_all(path);
        }
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Mount points at or below `dir` in this process's mount namespace, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|m| m.starts_with(&dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(field: &str) -> PathBuf {
    let mut out = Vec::new();
    let b = field.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Detaches every mount below `dir`; true when none is left.
fn unmount_below(dir: &Path) -> bool {
    for m in mounts_below(dir) {
        if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 with a valid C string.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    mounts_below(dir).is_empty()
}

/// Installs the SIGINT/SIGTERM handler: clean up, say so, exit 130.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        REGISTRY.abandon();
        eprintln!("error: interrupted; no partial artifact was left behind");
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// A file written under a temporary name until [`PartialFile::commit`] renames it.
#[derive(Debug)]
pub struct PartialFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    committed: bool,
}

impl PartialFile {
    /// Creates `.NAME.partial` beside `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        let name = dest
            .file_name()
            .with_context(|| format!("{} has no file name", dest.display()))?;
        let tmp = dest.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        let file = create_registered(&tmp, || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map(|file| (file, tmp.clone()))
                .with_context(|| format!("creating {}", tmp.display()))
        })?;
        Ok(PartialFile {
            tmp,
            dest: dest.to_path_buf(),
            file,
            committed: false,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Where the content is now (the temporary name).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the content goes on commit.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes the content to disk and renames it to its final name.
    pub fn commit(mut self) -> Result<PathBuf> {
        self.file
            .sync_all()
            .with_context(|| format!("flushing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.dest).with_context(|| {
            format!("renaming {} to {}", self.tmp.display(), self.dest.display())
        })?;
        unregister(&self.tmp);
        self.committed = true;
        Ok(self.dest.clone())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            remove_path(&self.tmp);
            unregister(&self.tmp);
        }
    }
}

/// A scratch directory, removed when dropped or on Ctrl-C.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a hidden scratch directory inside `parent` (the output directory, so that large
    /// scratch files live on the file system the user chose for outputs).
    pub fn create(parent: &Path, name: &str) -> Result<Self> {
        let path = create_registered(parent, || {
            let dir = tempfile::Builder::new()
                .prefix(&format!(".{name}.work-"))
                .tempdir_in(parent)
                .with_context(|| format!("creating a work directory in {}", parent.display()))?;
            let path = dir.keep();
            Ok((path.clone(), path))
        })?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        remove_path(&self.path);
        unregister(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.raw");
        let p = PartialFile::create(&dest).unwrap();
        assert!(p.path().exists());
        assert!(!dest.exists());
        p.commit().unwrap();
        assert!(dest.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let dropped = PartialFile::create(&dir.path().join("b.raw")).unwrap();
        let tmp = dropped.path().to_path_buf();
        drop(dropped);
        assert!(!tmp.exists());
        assert!(!dir.path().join("b.raw").exists());
    }

    #[test]
    fn temporaries_are_registered_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let registered = |p: &Path| lock(&REGISTRY.paths).iter().any(|r| r == p);
        let w = WorkDir::create(dir.path(), "x").unwrap();
        let p = PartialFile::create(&dir.path().join("c.qcow2")).unwrap();
        let (wp, pp) = (w.path().to_path_buf(), p.path().to_path_buf());
        assert!(registered(&wp) && registered(&pp));
        drop(w);
        p.commit().unwrap();
        assert!(!registered(&wp) && !registered(&pp));
    }

    #[test]
    fn mount_paths_unescape() {
        assert_eq!(unescape_mount_path("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
        assert!(mounts_below(Path::new("/proc")).contains(&PathBuf::from("/proc")));
    }

    #[test]
    fn abandon_stops_children_and_removes_paths() {
        // A registry of its own: the global one belongs to the other tests' children too.
        let reg = Registry::default();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.partial");
        std::fs::write(&file, b"1").unwrap();
        let sub = dir.path().join("work");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("g"), b"2").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        lock(&reg.paths).extend([file.clone(), sub.clone()]);
        lock(&reg.children).push(child.id() as i32);
        reg.abandon();
        assert!(!file.exists() && !sub.exists());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        // Once abandoned, nothing more is made (a worker thread racing the handler).
        let late = dir.path().join("late.partial");
        let made = reg.create(dir.path(), || {
            std::fs::write(&late, b"3")?;
            Ok(((), late.clone()))
        });
        assert!(made.is_err() && !late.exists());
    }
}
