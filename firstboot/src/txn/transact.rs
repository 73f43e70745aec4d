//! All files together: staged, swapped in, the services restarted; on a failure the files
//! are rolled back and what was restarted is restarted again on the old ones.

use std::collections::BTreeSet;

use anyhow::Context as _;

use crate::hooks::failpoint;
use crate::input::error::ConfigError;
use crate::plan::{DirSpec, Effect, Target};
use crate::tree::Tree;
use crate::txn::journal::Transaction;
use crate::txn::services::{ServiceManager, Step};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The configuration is not valid: nothing was touched.
    #[error("{}", crate::input::error::bounded_lines(.0).join("\n"))]
    Invalid(Vec<ConfigError>),
    /// Failed before any file was replaced.
    #[error("{0:#}")]
    NotApplied(anyhow::Error),
    /// Failed after files were replaced: they were restored.
    #[error("{error:#}; the previous configuration was restored{}", restore_note(.problems))]
    RolledBack {
        error: anyhow::Error,
        /// What went wrong while restoring, if anything.
        problems: Vec<String>,
    },
}

impl ApplyError {
    /// The lines a person reads: one per problem, then what became of the machine.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ApplyError::Invalid(errors) => crate::input::error::bounded_lines(errors)
                .into_iter()
                .chain(std::iter::once(
                    "nothing was changed; the machine keeps its last good configuration".into(),
                ))
                .collect(),
            other => vec![crate::input::error::one_line(&other.to_string())],
        }
    }
}

fn restore_note(problems: &[String]) -> String {
    if problems.is_empty() {
        String::new()
    } else {
        format!(" (but: {})", problems.join("; "))
    }
}

impl From<anyhow::Error> for ApplyError {
    fn from(e: anyhow::Error) -> ApplyError {
        ApplyError::NotApplied(e)
    }
}

/// Stages, swaps and restarts; rolls back on failure (also what the ACME client installs its
/// certificate with, see [`crate::acme`]).
pub fn transact(
    tree: &Tree,
    dirs: &[DirSpec],
    changed: &[&Target],
    effects: BTreeSet<Effect>,
    steps: &[Step],
    services: Option<&mut dyn ServiceManager>,
) -> Result<(), ApplyError> {
    let mut transaction = Transaction::stage(tree, changed, dirs, effects.into_iter().collect())
        .context("staging the new files")?;
    // Swapping, then recording that restarts begin: a failure in either rolls the files back.
    let swapped = transaction
        .swap(changed)
        .and_then(|()| transaction.restarting());
    if let Err(error) = swapped {
        let problems = transaction
            .rollback()
            .err()
            .map(|e| format!("{e:#}"))
            .into_iter()
            .collect();
        return Err(ApplyError::RolledBack { error, problems });
    }
    if let Some(services) = services {
        for (i, step) in steps.iter().enumerate() {
            if let Err(message) = services.run(step) {
                let error = anyhow::anyhow!("{step}: {message}");
                let mut problems: Vec<String> = transaction
                    .rollback()
                    .err()
                    .map(|e| format!("{e:#}"))
                    .into_iter()
                    .collect();
                problems.extend(restart_old(tree, &steps[..=i], services));
                return Err(ApplyError::RolledBack { error, problems });
            }
            failpoint("restarted");
        }
    }
    if let Err(e) = transaction.finish() {
        // Applied and restarted: only backups are left, and the journal (phase done) has the
        // next run remove them. Not a failure of the apply.
        eprintln!("warning: removing the backups: {e:#}; the next run removes them");
    }
    Ok(())
}

/// After a rollback: the non-check steps that ran (the failed one included) again, so that
/// the services use the restored files; the host name is the restored one.
fn restart_old(tree: &Tree, ran: &[Step], services: &mut dyn ServiceManager) -> Vec<String> {
    let old_hostname = tree
        .read("/etc/hostname")
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .filter(|h| !h.is_empty());
    let mut problems = Vec::new();
    for step in ran.iter().filter(|s| !s.is_check()) {
        let step = match step {
            Step::SetHostname(_) => match &old_hostname {
                Some(h) => Step::SetHostname(h.clone()),
                None => continue,
            },
            other => other.clone(),
        };
        if let Err(message) = services.run(&step) {
            problems.push(format!("{step}: {message}"));
        }
    }
    problems
}
