//! The builder's cache: downloads by hash, debootstrap trees and provisioned trees by the hash of
//! their inputs. An entry is a directory that counts only once its `.complete` marker exists,
//! and the marker is written last, so an interrupted run never leaves an entry that looks whole.

use crate::inputs::download::DownloadCache;
use crate::util::partial::WorkDir;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where cached inputs and stages live.
#[derive(Clone, Debug)]
pub struct Cache {
    pub root: PathBuf,
}

impl Cache {
    /// `$APPLIANCE_CACHE`, else /var/cache/appliance.
    pub fn from_env() -> Cache {
        let root = std::env::var_os("APPLIANCE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/appliance"));
        Cache { root }
    }

    pub fn downloads(&self) -> DownloadCache {
        DownloadCache::new(self.root.join("downloads"))
    }

    pub fn bases(&self) -> PathBuf {
        self.root.join("bases")
    }

    pub fn stages(&self) -> PathBuf {
        self.root.join("stages")
    }
}

/// One directory of the cache (a debootstrap tree, a provisioned tree) and its marker.
pub struct Entry {
    area: PathBuf,
    pub dir: PathBuf,
}

impl Entry {
    /// The entry `name` in the cache's folder `area` (see [`Cache::bases`], [`Cache::stages`]).
    pub fn new(area: PathBuf, name: &str) -> Entry {
        let dir = area.join(name);
        Entry { area, dir }
    }

    /// The marker written once the directory is whole; it holds the entry's key.
    pub fn marker(&self) -> PathBuf {
        self.dir.with_extension("complete")
    }

    pub fn is_complete(&self) -> bool {
        self.marker().exists()
    }

    /// Makes the entry anew: `make` writes the tree at the path it is given (in a work
    /// directory of the area, removed on failure), which then replaces the entry's directory;
    /// the marker with `key` comes last. `work` names the work directory.
    pub fn fill(
        &self,
        work: &str,
        key: &str,
        make: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.area)
            .with_context(|| format!("creating {}", self.area.display()))?;
        let tmp = WorkDir::create(&self.area, work)?;
        let tree = tmp.path().join("tree");
        make(&tree)?;
        let done = self.marker();
        let _ = std::fs::remove_file(&done);
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("replacing {}", self.dir.display()))?;
        }
        std::fs::rename(&tree, &self.dir)
            .with_context(|| format!("moving the tree to {}", self.dir.display()))?;
        std::fs::write(&done, format!("{key}\n"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_once_filled_and_a_failed_fill_keeps_the_old_one() {
        let d = tempfile::tempdir().unwrap();
        let e = Entry::new(d.path().join("stages"), "k");
        assert!(!e.is_complete());
        e.fill("stage", "key1", |t| {
            std::fs::create_dir(t)?;
            std::fs::write(t.join("a"), "1")?;
            Ok(())
        })
        .unwrap();
        assert!(e.is_complete());
        assert_eq!(std::fs::read_to_string(e.marker()).unwrap(), "key1\n");
        assert_eq!(std::fs::read_to_string(e.dir.join("a")).unwrap(), "1");
        let err = e.fill("stage", "key2", |_| anyhow::bail!("boom"));
        assert_eq!(err.unwrap_err().to_string(), "boom");
        assert_eq!(std::fs::read_to_string(e.dir.join("a")).unwrap(), "1");
        e.fill("stage", "key3", |t| {
            std::fs::create_dir(t)?;
            std::fs::write(t.join("b"), "2")?;
            Ok(())
        })
        .unwrap();
        assert!(!e.dir.join("a").exists());
        assert_eq!(std::fs::read_to_string(e.marker()).unwrap(), "key3\n");
        let left: Vec<_> = std::fs::read_dir(d.path().join("stages"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
