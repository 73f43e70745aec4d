//! The system being configured, seen through `--root`: paths are given as on the appliance
//! (`/etc/hostname`) and read under the root. Symbolic links are never followed, since an
//! absolute link in a tree under `--root` points at the host's files.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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

    /// Where `path` (absolute, as on the appliance) is under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
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

    /// Whether `path` is a directory (not through a link).
    pub fn is_dir(&self, path: &str) -> bool {
        std::fs::symlink_metadata(self.path(path)).is_ok_and(|m| m.is_dir())
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
}
