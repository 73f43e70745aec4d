//! Paths inside a root tree, resolved as if the tree were `/`.
//!
//! A tree's symlinks may be absolute (`/var/run -> /run`) or climb with `..`; followed from the
//! host they would lead out of the tree and into the host's own files. Everything that writes
//! into a tree from the host resolves paths here first.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The host path of `inner` (a path in the tree, absolute or not) with every symlink in its
/// directories resolved inside `root`. The last component is not followed, so a symlink there
/// is replaced rather than written through.
pub fn resolve(root: &Path, inner: &Path) -> Result<PathBuf> {
    let mut pending: Vec<OsString> = components(inner);
    pending.reverse();
    let mut done: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        if pending.is_empty() {
            done.push(c);
            break;
        }
        let here: PathBuf = done.iter().chain(std::iter::once(&c)).collect();
        let host = root.join(&here);
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    bail!(
                        "too many symlinks resolving /{} in {}",
                        inner.display(),
                        root.display()
                    );
                }
                let target = std::fs::read_link(&host)
                    .with_context(|| format!("reading the symlink {}", host.display()))?;
                if target.is_absolute() {
                    done.clear();
                }
                let mut t = components(&target);
                t.reverse();
                pending.extend(t);
            }
            Ok(m) if !m.is_dir() => {
                bail!("/{} in the tree is not a directory", here.display());
            }
            _ => done.push(c),
        }
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

/// `p` with `.` and `dir/..` folded away, without asking the file system: for host paths the
/// builder puts together itself (`profiles/../overlays/x`), so that messages and logs show
/// `overlays/x`. A leading `..` stays (there is nothing to fold it into).
pub fn lexical(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::create_dir_all(r.join("run")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/run", r.join("varrun")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        symlink("/etc/passwd", r.join("usr/lib/last")).unwrap();
        std::fs::write(r.join("file"), b"").unwrap();
        let res = |p: &str| resolve(r, Path::new(p)).unwrap();
        assert_eq!(
            res("/lib/systemd/x.service"),
            r.join("usr/lib/systemd/x.service")
        );
        assert_eq!(res("varrun/lock"), r.join("run/lock"));
        assert_eq!(res("/up/etc/shadow"), r.join("etc/shadow"));
        assert_eq!(res("/a/../../etc"), r.join("etc"));
        // The last component is never followed.
        assert_eq!(res("/usr/lib/last"), r.join("usr/lib/last"));
        assert!(resolve(r, Path::new("/file/x")).is_err());
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve(r, Path::new("/loop/x")).is_err());
    }

    #[test]
    fn lexical_folds_dots() {
        for (given, want) in [
            ("profiles/../overlays/firstboot/../../target/x", "target/x"),
            ("/a/./b/../c", "/a/c"),
            ("/../a", "/a"),
            ("../a/../../b", "../../b"),
            ("a/..", "."),
            ("./x", "x"),
        ] {
            assert_eq!(lexical(Path::new(given)), PathBuf::from(want), "{given}");
        }
    }
}
