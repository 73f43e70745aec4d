//! The system being configured, seen through `--root`: paths are given as on the appliance
//! (`/etc/hostname`) and read under the root. A path's last component is never followed (a link
//! there is read or replaced as a link); symbolic links among its directories are resolved
//! inside the root, as the system would see them once booted (an absolute link `/etc/nginx ->
//! /srv/nginx` leads to `<root>/srv/nginx`, and `..` stops at the root), never to the host's
//! files, like the builder's `rootpath::resolve`.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Links followed for one path at most, as the kernel's limit (ELOOP).
const MAX_LINKS: usize = 40;

/// What is at a path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    Absent,
    File {
        content: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink(PathBuf),
    /// A directory or a special file: never replaced.
    Other,
}

/// A system's root directory.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
}

impl Tree {
    pub fn new(root: impl Into<PathBuf>) -> Tree {
        Tree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `path` (absolute, as on the appliance) is under the root, its directories' links
    /// resolved inside the root (see the module doc). A component that is not a directory is
    /// kept, so the file operation fails there (ENOTDIR); a path whose links loop gives a path
    /// with a NUL byte, which every file operation refuses, rather than one the host resolves.
    pub fn path(&self, path: &str) -> PathBuf {
        resolve(&self.root, path)
            .unwrap_or_else(|| self.root.join(OsString::from_vec(b"\0".to_vec())))
    }

    /// What is at `path`.
    pub fn current(&self, path: &str) -> io::Result<Current> {
        let full = self.path(path);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Current::Absent),
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            Ok(Current::Symlink(std::fs::read_link(&full)?))
        } else if kind.is_file() {
            Ok(Current::File {
                content: std::fs::read(&full)?,
                mode: meta.permissions().mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            })
        } else {
            Ok(Current::Other)
        }
    }

    /// The content of the regular file at `path`; `None` if there is none (or a link).
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.current(path)? {
            Current::File { content, .. } => Ok(Some(content)),
            _ => Ok(None),
        }
    }

    /// Whether `path` is a directory, a link to one included when the link leads to it inside
    /// the root (as a directory of a longer path would be resolved).
    pub fn is_dir(&self, path: &str) -> bool {
        resolve_with(&self.root, path, true)
            .is_some_and(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
    }

    /// Whether anything, a dangling link included, is at `path`.
    pub fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.path(path)).is_ok()
    }

    /// The id of user `name` in the tree's /etc/passwd.
    pub fn user_id(&self, name: &str) -> Option<u32> {
        self.lookup("/etc/passwd", name)
    }

    /// The id of group `name` in the tree's /etc/group.
    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.lookup("/etc/group", name)
    }

    fn lookup(&self, file: &str, name: &str) -> Option<u32> {
        let text = self.read(file).ok()??;
        String::from_utf8_lossy(&text).lines().find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            fields.nth(1)?.parse().ok()
        })
    }

    /// Whether systemd has a unit file named `unit` in the tree.
    pub fn has_unit(&self, unit: &str) -> bool {
        [
            "/etc/systemd/system",
            "/lib/systemd/system",
            "/usr/lib/systemd/system",
        ]
        .iter()
        .any(|dir| self.exists(&format!("{dir}/{unit}")))
    }

    /// Whether an executable named `name` is in the tree's usual directories.
    pub fn has_command(&self, name: &str) -> bool {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|dir| self.exists(&format!("{dir}/{name}")))
    }
}

/// `path` under `root` with the links of its directories resolved inside `root`; `None` when
/// they loop.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    resolve_with(root, path, false)
}

/// [`resolve`], the last component's link also followed when `follow_last`.
fn resolve_with(root: &Path, path: &str, follow_last: bool) -> Option<PathBuf> {
    // Components still to walk, the next one last.
    let mut todo: Vec<OsString> = names(Path::new(path));
    todo.reverse();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let candidate = at.join(&name);
        let target = match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(meta) if meta.file_type().is_symlink() && (follow_last || !todo.is_empty()) => {
                std::fs::read_link(root.join(&candidate)).ok()
            }
            _ => None,
        };
        match target {
            None => at = candidate,
            Some(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                if target.is_absolute() {
                    at = PathBuf::new();
                }
                todo.extend(names(&target).into_iter().rev());
            }
        }
    }
    Some(root.join(at))
}

/// The normal and `..` components of `path`.
fn names(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        std::fs::create_dir_all(tree.path("/etc")).unwrap();
        std::fs::write(
            tree.path("/etc/group"),
            "root:x:0:\nssl-cert:x:110:prosody\nprosody:x:111:\n",
        )
        .unwrap();
        assert_eq!(tree.group_id("ssl-cert"), Some(110));
        assert_eq!(tree.group_id("ssl"), None);
        assert_eq!(tree.user_id("root"), None);
        std::os::unix::fs::symlink("/etc/group", tree.path("/etc/link")).unwrap();
        assert_eq!(
            tree.current("/etc/link").unwrap(),
            Current::Symlink("/etc/group".into())
        );
        assert_eq!(tree.read("/etc/link").unwrap(), None);
        assert_eq!(tree.current("/etc/none").unwrap(), Current::Absent);
        assert_eq!(tree.current("/etc").unwrap(), Current::Other);
    }

    #[test]
    fn links_of_directories_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("srv/nginx")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let link = |target: &Path, at: &str| std::os::unix::fs::symlink(target, root.join(at));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        link(&outside, "etc/nginx").unwrap();
        link(Path::new("../../.."), "etc/up").unwrap();
        link(Path::new("/srv/nginx"), "etc/abs").unwrap();
        link(Path::new("/etc/passwd"), "etc/last").unwrap();
        link(Path::new("loop"), "etc/loop").unwrap();
        let tree = Tree::new(&root);
        // A link to a host directory is taken inside the root.
        assert_eq!(
            tree.path("/etc/nginx/sites-available/x.conf"),
            root.join(outside.strip_prefix("/").unwrap())
                .join("sites-available/x.conf")
        );
        assert_eq!(tree.path("/etc/up/etc/shadow"), root.join("etc/shadow"));
        assert_eq!(tree.path("/etc/abs/a.conf"), root.join("srv/nginx/a.conf"));
        assert_eq!(tree.path("/etc/last"), root.join("etc/last"));
        // A link to a directory is one when it leads to one inside the root.
        assert!(tree.is_dir("/etc/abs"));
        assert!(!tree.is_dir("/etc/nginx"));
        assert!(!tree.is_dir("/etc/loop"));
        assert!(tree.path("/etc/loop/x").to_str().unwrap().contains('\0'));
        assert!(std::fs::write(tree.path("/etc/loop/x"), "x").is_err());
    }
}
