//! One run at a time: `apply`, `reconfigure` and `acme` each hold [`LOCK_FILE`] for the
//! whole run.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;

use anyhow::{Context as _, Result};

use crate::tree::Tree;

/// The lock file, relative to the root.
pub const LOCK_FILE: &str = "var/lib/appliance/lock";
/// Takes the lock for the whole run (released when the file is closed, also on abort).
pub fn lock(tree: &Tree) -> Result<File> {
    let dir = tree.path("/var/lib/appliance");
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("making {}", dir.display()))?;
    }
    let path = tree.path(&format!("/{LOCK_FILE}"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}
