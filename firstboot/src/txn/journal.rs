//! Putting a plan's files in place all or nothing, so that a run cut short at any point (power
//! cut, `kill -9`) leaves what the next run can finish or undo.
//!
//! **Staging next to the target.** Each new file is first written (and fsynced, with its
//! mode and owner) as `.<name>.firstboot-new` in the target's own directory, so that the
//! final `rename(2)` is on one filesystem and atomic wherever /etc, /var or /usr are mounted.
//! The names start with a dot and end in `.firstboot-new` / `.firstboot-old`, which none of
//! the configuration globs matches (nginx's `sites-enabled/*` skips dot files; prosody's
//! `conf.d/*.cfg.lua` and systemd's `*.conf` need their suffix).
//!
//! **Backups as hard links.** Before a target is replaced, its current file (or link) is
//! hard-linked as `.<name>.firstboot-old`; then the new file is renamed over it (or, for a
//! removal, the target is unlinked). The target is never missing in between, and restoring
//! is one rename back.
//!
//! **The journal**, `/var/lib/appliance/apply.journal` (replaced atomically at each phase),
//! lists every target with whether it existed before, and the phase:
//!
//! | phase        | cut short here, the next run                                          |
//! |--------------|-----------------------------------------------------------------------|
//! | `staging`    | deletes the staged files: nothing was touched                         |
//! | `swapping`   | rolls back: each backup renamed over its target, new targets removed  |
//! | `restarting` | rolls back as well, and restarts what the journal names, since services may have been restarted with the new files |
//! | `done`       | deletes the leftover backups: the apply had succeeded                 |
//!
//! and then applies again from the start. The state file is one of the targets, so after a
//! rollback it again names the old configuration and the next run does not take the
//! machine for configured.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::hooks::failpoint;
use crate::plan::{Action, DirSpec, Effect, Target};
use crate::tree::Tree;

/// The journal, relative to the root.
pub const JOURNAL_FILE: &str = "var/lib/appliance/apply.journal";
const NEW_SUFFIX: &str = ".firstboot-new";
const OLD_SUFFIX: &str = ".firstboot-old";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Staging,
    Swapping,
    Restarting,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    path: String,
    had_original: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    phase: Phase,
    entries: Vec<Entry>,
    /// What the changed files require, for a run that finds this journal in `restarting`.
    effects: Vec<Effect>,
    /// Directories this run makes, parents first: removed again (when empty) on rollback.
    #[serde(default)]
    created_dirs: Vec<String>,
}

/// What the recovery of an interrupted run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The phase the run was in.
    pub phase: Phase,
    /// Effects whose services may run with files that were rolled back: restart them.
    pub effects: Vec<Effect>,
}

/// `dir/.name.firstboot-new` (or `-old`) for `path`.
fn sibling(path: &str, suffix: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    format!("{dir}/.{name}{suffix}")
}

/// Finishes or undoes the run a journal under `tree` was left by, if any.
pub fn recover(tree: &Tree) -> Result<Option<Recovered>> {
    let path = tree.path(JOURNAL_FILE);
    // A journal being replaced when the run was cut short.
    remove_if_present(&path.with_extension("tmp"))
        .with_context(|| format!("removing {}", path.with_extension("tmp").display()))?;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let Ok(journal) = serde_json::from_slice::<Journal>(&bytes) else {
        // A journal is replaced by rename, never written in place, so it is whole or absent;
        // this is not one of ours.
        anyhow::bail!(
            "{} is not a journal this program wrote: move it away to go on",
            path.display()
        );
    };
    let transaction = Transaction {
        tree: tree.clone(),
        journal,
    };
    let phase = transaction.journal.phase;
    let effects = match phase {
        Phase::Restarting => transaction.journal.effects.clone(),
        _ => Vec::new(),
    };
    match phase {
        Phase::Staging | Phase::Swapping | Phase::Restarting => transaction.rollback()?,
        Phase::Done => transaction.finish()?,
    }
    Ok(Some(Recovered { phase, effects }))
}

/// An apply in progress.
pub struct Transaction {
    tree: Tree,
    journal: Journal,
}

impl Transaction {
    /// Writes the journal and stages every target's new file; nothing in place is touched.
    /// On error the staged files are removed again.
    pub fn stage(
        tree: &Tree,
        targets: &[&Target],
        dirs: &[DirSpec],
        effects: Vec<Effect>,
    ) -> Result<Transaction> {
        let mut paths = std::collections::HashSet::new();
        if let Some(twice) = targets.iter().find(|t| !paths.insert(t.path.as_str())) {
            anyhow::bail!(
                "journal: {} is targeted twice (an error of the plan)",
                twice.path
            );
        }
        let entries = targets
            .iter()
            .map(|t| Entry {
                path: t.path.clone(),
                had_original: tree.exists(&t.path),
            })
            .collect();
        let transaction = Transaction {
            tree: tree.clone(),
            journal: Journal {
                phase: Phase::Staging,
                entries,
                effects,
                created_dirs: missing_dirs(tree, targets, dirs),
            },
        };
        transaction.write_journal()?;
        failpoint("journal");
        let staged = (|| -> Result<()> {
            for dir in &transaction.journal.created_dirs {
                let spec = dirs.iter().find(|d| &d.path == dir);
                transaction.make_dir(dir, spec)?;
            }
            for target in targets {
                transaction.stage_one(target)?;
                failpoint("staged");
            }
            transaction.sync_dirs()
        })();
        match staged {
            Ok(()) => Ok(transaction),
            Err(e) => {
                // Nothing was swapped: dropping the staged files is the whole rollback.
                let _ = transaction.rollback();
                Err(e)
            }
        }
    }

    /// Puts every staged file in place, keeping backups. On error the caller rolls back.
    pub fn swap(&mut self, targets: &[&Target]) -> Result<()> {
        self.set_phase(Phase::Swapping)?;
        failpoint("swapping");
        for (entry, target) in self.journal.entries.iter().zip(targets) {
            let full = self.tree.path(&entry.path);
            let old = self.tree.path(&sibling(&entry.path, OLD_SUFFIX));
            if entry.had_original {
                remove_if_present(&old)?;
                std::fs::hard_link(&full, &old)
                    .with_context(|| format!("keeping a backup of {}", entry.path))?;
                failpoint("backed-up");
            }
            match &target.action {
                Action::Remove => {
                    remove_if_present(&full).with_context(|| format!("removing {}", entry.path))?
                }
                Action::File(_) | Action::Symlink(_) => {
                    let new = self.tree.path(&sibling(&entry.path, NEW_SUFFIX));
                    std::fs::rename(&new, &full)
                        .with_context(|| format!("putting {} in place", entry.path))?;
                }
            }
            failpoint("swapped");
        }
        self.sync_dirs()
    }

    /// Every file is in place; services are restarted next.
    pub fn restarting(&mut self) -> Result<()> {
        self.set_phase(Phase::Restarting)?;
        failpoint("restarting");
        Ok(())
    }

    /// Keeps the new files: removes the backups and the journal.
    pub fn finish(mut self) -> Result<()> {
        if self.journal.phase != Phase::Done {
            self.set_phase(Phase::Done)?;
            failpoint("done");
        }
        for entry in &self.journal.entries {
            remove_if_present(&self.tree.path(&sibling(&entry.path, OLD_SUFFIX)))?;
            remove_if_present(&self.tree.path(&sibling(&entry.path, NEW_SUFFIX)))?;
            failpoint("cleaned");
        }
        self.remove_journal()?;
        failpoint("finished");
        Ok(())
    }

    /// Puts every target back as it was, in reverse order, and removes the journal.
    pub fn rollback(self) -> Result<()> {
        let mut problems = Vec::new();
        for entry in self.journal.entries.iter().rev() {
            let full = self.tree.path(&entry.path);
            let old = self.tree.path(&sibling(&entry.path, OLD_SUFFIX));
            let new = self.tree.path(&sibling(&entry.path, NEW_SUFFIX));
            let result = if self.journal.phase == Phase::Staging {
                Ok(())
            } else if entry.had_original {
                // Without a backup the target was not reached yet and is as it was.
                // rename(2) does nothing when both names are links to one file (backed up, not
                // yet swapped): the backup is removed then, or it keeps old keys reachable.
                match std::fs::symlink_metadata(&old) {
                    Ok(_) => std::fs::rename(&old, &full).and_then(|()| remove_if_present(&old)),
                    Err(_) => Ok(()),
                }
            } else {
                remove_if_present(&full)
            };
            if let Err(e) = result.and_then(|()| remove_if_present(&new)) {
                problems.push(format!("{}: {e}", entry.path));
            }
        }
        for dir in self.journal.created_dirs.iter().rev() {
            // Only when empty: whatever else was put there since is kept.
            let _ = std::fs::remove_dir(self.tree.path(dir));
        }
        self.sync_dirs()?;
        if !problems.is_empty() {
            anyhow::bail!("could not restore {}", problems.join("; "));
        }
        self.remove_journal()
    }

    fn stage_one(&self, target: &Target) -> Result<()> {
        let new = self.tree.path(&sibling(&target.path, NEW_SUFFIX));
        remove_if_present(&new)?;
        match &target.action {
            Action::Remove => {}
            Action::Symlink(to) => std::os::unix::fs::symlink(to, &new)
                .with_context(|| format!("staging the link {}", target.path))?,
            Action::File(spec) => {
                let write = || -> std::io::Result<()> {
                    let mut file = create_private(&new)?;
                    file.write_all(&spec.content)?;
                    chown(&new, spec.uid, spec.gid, self.tree.root())?;
                    file.set_permissions(std::fs::Permissions::from_mode(spec.mode))?;
                    file.sync_all()
                };
                write().with_context(|| format!("staging {}", target.path))?;
            }
        }
        Ok(())
    }

    /// Makes `path` (its parent exists), with `spec`'s mode and owner or 0755 root's.
    fn make_dir(&self, path: &str, spec: Option<&DirSpec>) -> Result<()> {
        let full = self.tree.path(path);
        if full.is_dir() {
            return Ok(());
        }
        let (mode, uid, gid) = spec.map_or((0o755, 0, 0), |d| (d.mode, d.uid, d.gid));
        let make = || -> std::io::Result<()> {
            std::fs::create_dir(&full)?;
            chown(&full, uid, gid, self.tree.root())?;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
        };
        make().with_context(|| format!("making the directory {path}"))
    }

    fn set_phase(&mut self, phase: Phase) -> Result<()> {
        self.journal.phase = phase;
        self.write_journal()
    }

    fn write_journal(&self) -> Result<()> {
        let path = self.tree.path(JOURNAL_FILE);
        let text = serde_json::to_vec_pretty(&self.journal).expect("journal serializes");
        write_atomically(&path, &text).with_context(|| format!("writing {}", path.display()))
    }

    fn remove_journal(&self) -> Result<()> {
        let path = self.tree.path(JOURNAL_FILE);
        remove_if_present(&path).with_context(|| format!("removing {}", path.display()))?;
        sync_dir(path.parent().unwrap_or(Path::new("/")))
            .with_context(|| format!("syncing {}", path.display()))
    }

    /// fsyncs every directory holding a target, so that renames survive a power cut.
    fn sync_dirs(&self) -> Result<()> {
        let mut dirs: Vec<PathBuf> = self
            .journal
            .entries
            .iter()
            .filter_map(|e| self.tree.path(&e.path).parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            if dir.is_dir() {
                sync_dir(&dir).with_context(|| format!("syncing {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

/// The directories that do not exist yet among `dirs` and the targets' parents, with their
/// missing ancestors, parents first.
fn missing_dirs(tree: &Tree, targets: &[&Target], dirs: &[DirSpec]) -> Vec<String> {
    let parent = |p: &str| {
        p.rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .filter(|d| !d.is_empty())
    };
    let wanted = dirs
        .iter()
        .map(|d| Some(d.path.clone()))
        .chain(targets.iter().map(|t| parent(&t.path)));
    let mut missing: Vec<String> = Vec::new();
    for dir in wanted.flatten() {
        let mut chain = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if tree.exists(&d) || missing.contains(&d) {
                break;
            }
            at = parent(&d);
            chain.push(d);
        }
        missing.extend(chain.into_iter().rev());
    }
    missing
}

/// Writes `path` through a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        // A file or link left at `tmp` is replaced, never written through.
        remove_if_present(&tmp)?;
        let mut file = create_private(&tmp)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_all());
        if let Err(e) = written {
            // A full disk leaves no empty temporary file behind.
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

/// A new file, 0600 from its creation (the content may be a key): never an existing one, and
/// never through a link.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    // Looked up first: unlink(2) of a missing name on a read-only file system says EROFS,
    // which would report a failure to restore where there was nothing to do.
    if let Err(e) = std::fs::symlink_metadata(path) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(());
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Sets the owner. Under a `--root` other than `/`, a caller that may not (tests not run as
/// root) leaves the owner as it is.
fn chown(path: &Path, uid: u32, gid: u32, root: &Path) -> std::io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && root != Path::new("/") => {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings() {
        assert_eq!(
            sibling("/etc/nginx/sites-enabled/appliance.conf", NEW_SUFFIX),
            "/etc/nginx/sites-enabled/.appliance.conf.firstboot-new"
        );
        assert_eq!(
            sibling("/etc/hosts", OLD_SUFFIX),
            "/etc/.hosts.firstboot-old"
        );
    }

    /// A link or file left where the temporary file goes is replaced, not written through.
    #[test]
    fn write_atomically_does_not_write_through_a_left_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "theirs").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().join("state.json");
        std::os::unix::fs::symlink(&outside, dir.path().join("state.tmp")).unwrap();
        write_atomically(&path, b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "theirs");
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    /// A backup is a hard link to the file it keeps: renaming one onto the other does
    /// nothing, so a rollback before the swap of that file must remove the backup itself.
    #[test]
    fn a_rollback_after_a_backup_leaves_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        std::fs::create_dir_all(dir.path().join("var/lib/appliance")).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/x"), "old").unwrap();
        let write = Target {
            path: "/etc/x".into(),
            action: Action::File(crate::plan::FileSpec {
                content: b"new".to_vec(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }),
            effects: Vec::new(),
        };
        let mut transaction = Transaction::stage(&tree, &[&write], &[], Vec::new()).unwrap();
        // The swap fails after the backup: its staged file is gone.
        std::fs::remove_file(dir.path().join("etc/.x.firstboot-new")).unwrap();
        assert!(transaction.swap(&[&write]).is_err());
        transaction.rollback().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/x")).unwrap(),
            "old"
        );
    }

    /// A second entry for a path would back up the first one's new file over its backup.
    #[test]
    fn a_path_targeted_twice_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::new(dir.path());
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/x"), "old").unwrap();
        let target = |action| Target {
            path: "/etc/x".into(),
            action,
            effects: Vec::new(),
        };
        let write = target(Action::File(crate::plan::FileSpec {
            content: b"new".to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        }));
        let remove = target(Action::Remove);
        let error = Transaction::stage(&tree, &[&write, &remove], &[], Vec::new())
            .err()
            .expect("staged");
        assert_eq!(
            error.to_string(),
            "journal: /etc/x is targeted twice (an error of the plan)"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["x"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/x")).unwrap(),
            "old"
        );
    }
}
