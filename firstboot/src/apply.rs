//! `apply` and `reconfigure`: from user-data to a configured machine, all or nothing.
//!
//! 1. Take the lock (`/var/lib/appliance/lock`), so that the boot-time run and a manual
//!    `reconfigure` never interleave; finish or roll back a run that was cut short
//!    ([`crate::txn::journal`]).
//! 2. Read and check the configuration ([`crate::input::userdata`], [`crate::input::config`]); a bad value
//!    stops here, before anything is touched. Its effective form (config.yaml's text) is
//!    hashed: for `apply`, the same instance id and hash as the last successful apply mean
//!    there is nothing to do, and the run ends here (this is every boot after the first).
//! 3. Make the [`ApplyPlan`] ([`crate::plan`]): every file rendered in memory, secrets
//!    generated or kept ([`crate::secrets`]). Targets that the tree already has as planned
//!    are dropped; if only the state's time stamp would change, nothing is written.
//! 4. Stage, swap, restart ([`crate::txn::journal`], [`crate::txn::services`]). If a step fails, every
//!    target is restored from its backup, the services restarted so far are restarted again
//!    with the old files, and the error names the step; the last good configuration, state
//!    included, stays in force.
//!
//! Services are touched only when `--root` is `/` and `--no-restart` is not given (or
//! through the test recorder, see [`crate::hooks`]): a tree under another root is not the
//! running system.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::hooks::{failpoint, TestHooks};
use crate::input::address::Machine;
use crate::input::userdata::{self, Precedence, Sources};
use crate::plan::{self, ApplyPlan, Effect, PlanInput, Target};
use crate::render::Templates;
use crate::secrets::{Random, Secrets, SECRETS_FILE};
use crate::state::{effective_yaml, sha256_hex, State, STATE_FILE};
use crate::tree::Tree;
use crate::txn::journal::{self, Recovered};
use crate::txn::lock::lock;
pub use crate::txn::lock::LOCK_FILE;
use crate::txn::services::{ServiceManager, Step};
use crate::txn::transact::transact;
pub use crate::txn::transact::ApplyError;

/// Why the last run failed, relative to the root: written when a run fails (the machine
/// keeps its last good configuration), removed by the next run that succeeds; `status`
/// shows it. Plain text: the time, then one line per problem.
pub const LAST_FAILURE_FILE: &str = "var/lib/appliance/last-failure";

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// Apply even when the state says this configuration is applied.
    pub reconfigure: bool,
    pub hooks: TestHooks,
}

/// What a run did.
#[derive(Debug)]
pub enum Outcome {
    /// The same instance and configuration were applied before: nothing done.
    UpToDate { state: State },
    /// Applied (possibly with nothing to change).
    Applied {
        state: State,
        /// The paths written, linked or removed.
        changed: Vec<String>,
        /// The steps run (none with `--no-restart`).
        steps: Vec<Step>,
        /// What was found of an interrupted run.
        recovered: Option<Recovered>,
    },
}

/// Runs `apply` or `reconfigure` under `options.root`; `services` is `None` for no restarts.
/// A failure is recorded in [`LAST_FAILURE_FILE`] for `status`; a success removes the record.
pub fn run(
    options: &Options,
    services: Option<&mut dyn ServiceManager>,
) -> Result<Outcome, ApplyError> {
    let tree = Tree::new(&options.root);
    let _lock = lock(&tree)?;
    let result = run_locked(&tree, options, services);
    if let Err(e) = record_outcome(&tree, result.as_ref().err(), options.hooks.now()) {
        // The run's own outcome is what counts; say why `status` will not show it.
        eprintln!("warning: recording the outcome in /{LAST_FAILURE_FILE}: {e:#}");
    }
    result
}

/// Writes or removes [`LAST_FAILURE_FILE`].
fn record_outcome(
    tree: &Tree,
    error: Option<&ApplyError>,
    now: std::time::SystemTime,
) -> Result<()> {
    let path = tree.path(&format!("/{LAST_FAILURE_FILE}"));
    match error {
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
        Some(error) => {
            let mut text = format!(
                "failed on {}\n",
                crate::input::cert::utc_date(crate::plan::tls::epoch_seconds(now))
            );
            for line in error.lines() {
                text.push_str(&line);
                text.push('\n');
            }
            journal::write_atomically(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))
        }
    }
}

fn run_locked(
    tree: &Tree,
    options: &Options,
    services: Option<&mut dyn ServiceManager>,
) -> Result<Outcome, ApplyError> {
    let tree = tree.clone();
    let recovered = journal::recover(&tree).context("recovering an interrupted apply")?;
    failpoint("recovered");

    let now = options.hooks.now();
    let instance_id =
        userdata::instance_id(tree.root()).map_err(|e| ApplyError::Invalid(vec![e]))?;
    let previous = tree
        .read(&format!("/{STATE_FILE}"))
        .context("reading the state")?
        .and_then(|b| State::parse(&b));
    let precedence = Precedence::for_run(
        previous.as_ref().map(|s| s.instance_id.as_str()),
        &instance_id,
    );
    // IP mode's address is looked up on every run: a new one is a new configuration.
    let machine = Machine::read(tree.root(), &options.hooks);
    let config = Sources::read(tree.root())
        .and_then(|sources| sources.validate_on(precedence, now, &machine))
        .map_err(ApplyError::Invalid)?;
    let yaml = effective_yaml(&config);
    let hash = sha256_hex(&yaml);
    if let Some(state) = &previous {
        if !options.reconfigure
            && recovered.is_none()
            && state.instance_id == instance_id
            && state.config_sha256 == hash
        {
            return Ok(Outcome::UpToDate {
                state: state.clone(),
            });
        }
    }

    let mut random = match &options.hooks.seed {
        Some(seed) => Random::seeded(seed, &instance_id),
        None => Random::system(),
    };
    let stored = tree
        .read(&format!("/{SECRETS_FILE}"))
        .context("reading the secrets")?;
    let secrets = Secrets::for_instance(stored.as_deref(), &instance_id, &mut random);
    let templates = Templates::load(tree.root())?;
    let input = PlanInput {
        config: &config,
        effective_yaml: &yaml,
        config_sha256: &hash,
        instance_id: &instance_id,
        previous: previous.as_ref(),
        secrets: &secrets,
        now,
    };
    let plan = plan::plan(&input, &tree, &templates, &mut random).context("planning")?;
    let changed = changed_targets(&plan, &tree, previous.as_ref())?;
    let mut effects: BTreeSet<Effect> = changed
        .iter()
        .flat_map(|t| t.effects.iter().copied())
        .collect();
    if let Some(r) = &recovered {
        effects.extend(r.effects.iter().copied());
    }
    failpoint("planned");
    let steps = if services.is_some() {
        plan.steps(&effects)
    } else {
        Vec::new()
    };
    if changed.is_empty() && steps.is_empty() {
        return Ok(Outcome::Applied {
            state: previous.unwrap_or_else(|| plan.state.clone()),
            changed: Vec::new(),
            steps: Vec::new(),
            recovered,
        });
    }
    transact(&tree, &plan.dirs, &changed, effects, &steps, services)?;
    let changed = changed.iter().map(|t| t.path.clone()).collect();
    Ok(Outcome::Applied {
        state: plan.state,
        changed,
        steps,
        recovered,
    })
}

/// The targets the tree does not have yet. The state alone (its time stamp) is no change.
fn changed_targets<'p>(
    plan: &'p ApplyPlan,
    tree: &Tree,
    previous: Option<&State>,
) -> Result<Vec<&'p Target>> {
    let mut changed = Vec::new();
    for target in &plan.targets {
        if !target.is_satisfied(tree)? {
            changed.push(target);
        }
    }
    let state_path = format!("/{STATE_FILE}");
    let only_state = changed.iter().all(|t| t.path == state_path);
    let same_state = previous.is_some_and(|p| {
        State {
            applied_at: plan.state.applied_at,
            ..p.clone()
        } == plan.state
    });
    if only_state && same_state {
        changed.clear();
    }
    Ok(changed)
}

/// What `status` reports: the state of the last apply, whether a run was cut short, and the
/// last failed run (its time and its errors), for people ([`std::fmt::Display`]) and `--json`.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// `None`: not applied yet.
    pub state: Option<State>,
    pub interrupted: bool,
    pub last_failure: Option<LastFailure>,
}

#[derive(Debug, serde::Serialize)]
pub struct LastFailure {
    pub when: String,
    pub errors: Vec<String>,
}

/// `status`: the state of the last apply, and whether a run was cut short.
pub fn status(root: &std::path::Path) -> Result<Status> {
    let tree = Tree::new(root);
    let state = tree
        .read(&format!("/{STATE_FILE}"))
        .context("reading the state")?;
    let state = match state {
        None => None,
        Some(bytes) => match State::parse(&bytes) {
            Some(state) => Some(state),
            None => anyhow::bail!("/{STATE_FILE} is not a state file this program wrote"),
        },
    };
    let last_failure = tree
        .read(&format!("/{LAST_FAILURE_FILE}"))
        .context("reading the last failure")?
        .map(|failure| {
            let failure = String::from_utf8_lossy(&failure);
            let mut lines = failure.lines();
            LastFailure {
                when: lines.next().unwrap_or_default().to_owned(),
                errors: lines.map(str::to_owned).collect(),
            }
        });
    Ok(Status {
        state,
        interrupted: tree.exists(&format!("/{}", journal::JOURNAL_FILE)),
        last_failure,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            None => f.write_str("not applied yet")?,
            Some(state) => write!(f, "{state}")?,
        }
        if self.interrupted {
            f.write_str("\nan apply was interrupted: the next run finishes or rolls it back")?;
        }
        if let Some(failure) = &self.last_failure {
            write!(
                f,
                "\nlast run:     {}, the configuration above stays in force",
                failure.when
            )?;
            for line in &failure.errors {
                write!(f, "\n  error: {line}")?;
            }
        }
        Ok(())
    }
}
