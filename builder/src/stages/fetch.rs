//! `appliance fetch PROFILE --out DIR`: every external input of a build, in a bundle
//! ([`crate::inputs::bundle`]) that `appliance build PROFILE --bundle DIR` builds from with no network.
//!
//! Fetch runs the build's own provisioning in a scratch tree and keeps what it downloads,
//! rather than working out beforehand what a build needs: what is needed is decided by the
//! overlays' scripts and by apt's dependency resolution against the repositories as they are
//! now, so only running them gives exactly the set a build uses, packages installed and
//! purged again (build-essential for npm's native modules) included. Kept are: the base's
//! files (the tarball with its signed SHA256SUMS, or `debootstrap --make-tarball`'s .debs,
//! from which the scratch tree is then made with `--unpack-tarball`, as the bundle build
//! will), every .deb apt installs (apt's `DPkg::Pre-Install-Pkgs` hook, so `apt-get clean` in
//! a script does not lose any), and what the helpers `fetch-pinned` and `apt-key-pinned`
//! download (they keep a copy under `downloads/`). Then the .debs get a flat repository index
//! (apt-ftparchive) and every file its SHA-256 in bundle.json and SHA256SUMS.
//!
//! The bundle is made in a hidden directory beside DIR and renamed to DIR only when complete:
//! a failed or interrupted fetch leaves no bundle. Its logs are in `DIR.logs/` either way.
//! Nothing is taken from or put in the provisioned-tree cache (the point is to download);
//! downloads of files with a known hash still use the download cache.

use crate::inputs::bundle;
use crate::inputs::mirror::Mirrors;
use crate::inputs::{self, Inputs};
use crate::spec::profile::Profile;
use crate::stages::base;
use crate::stages::build::{provision_tree, BuildLog, ProvisionJob};
use crate::stages::cache::Cache;
use crate::util::partial::WorkDir;
use crate::util::progress::Reporter;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct FetchOptions {
    /// The bundle to make (must not exist).
    pub to: PathBuf,
    pub mirrors: Mirrors,
    pub cache: Cache,
    pub source_date_epoch: Option<u64>,
}

/// What a fetch made.
#[derive(Debug, Serialize)]
pub struct Fetched {
    pub bundle: PathBuf,
    /// SHA-256 of its bundle.json.
    pub sha256: String,
    pub files: usize,
    pub bytes: u64,
    pub debs: usize,
    pub downloads: usize,
    pub logs: PathBuf,
}

/// `DIR.logs` beside the bundle `DIR`.
pub fn logs_dir(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".logs");
    to.with_file_name(name)
}

/// Makes the bundle for `profile` at `opts.to`.
pub fn fetch(profile: &Profile, opts: &FetchOptions, reporter: &Reporter) -> Result<Fetched> {
    let to = &opts.to;
    if to.symlink_metadata().is_ok() {
        bail!(
            "--out {}: already exists; a bundle is made in a new directory",
            to.display()
        );
    }
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = WorkDir::create(&parent, &format!("{}-fetch", profile.file.name))?;
    let staging = work.path().join("bundle");
    for d in [bundle::APT, bundle::DOWNLOADS] {
        let d = staging.join(d);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    }
    let inputs = Inputs::Fetch {
        mirrors: &opts.mirrors,
        staging: &staging,
    };
    let logs = logs_dir(to);
    fetch_into(profile, opts, &inputs, &staging, &work, &logs, reporter)
        .map_err(|e| inputs::explain(e, &inputs))
}

fn fetch_into(
    profile: &Profile,
    opts: &FetchOptions,
    inputs: &Inputs,
    staging: &Path,
    work: &WorkDir,
    logs: &Path,
    reporter: &Reporter,
) -> Result<Fetched> {
    let mut log = BuildLog::create(logs)?;
    log.note(&format!(
        "fetching the inputs of profile {} ({}) into {}",
        profile.file.name,
        profile.path.display(),
        opts.to.display()
    ));
    let id = base::identify(&profile.base, &opts.cache, inputs, false, true)?
        .expect("identify with fetch = true names the base");
    let tree = work.path().join("tree");
    let job = ProvisionJob {
        profile,
        id: &id,
        cache: &opts.cache,
        inputs,
        offline: false,
        refresh: true,
        logs,
        reporter,
    };
    provision_tree(&job, &tree, &mut log, &mut |_, _: Instant| {})?;
    // The scratch tree is done with; the bundle is what stays.
    let step = reporter.step("indexing the bundle");
    bundle::index_apt_repository(&staging.join(bundle::APT))?;
    let downloads = bundle::tidy_downloads(staging)?;
    let debs = std::fs::read_dir(staging.join(bundle::APT))
        .with_context(|| format!("listing {}", staging.join(bundle::APT).display()))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".deb"))
        })
        .count();
    let created = opts
        .source_date_epoch
        .unwrap_or_else(crate::disk::assemble::now);
    let sha256 = bundle::seal(
        staging,
        &opts.to,
        &profile.file.name,
        &profile.sha256,
        &profile.variables,
        base::bundle_files(&profile.base),
        created,
    )?;
    step.done();
    let manifest = bundle::parse_manifest(
        &std::fs::read_to_string(opts.to.join(bundle::MANIFEST))
            .context("reading the bundle's manifest back")?,
    )?;
    let fetched = Fetched {
        bundle: opts.to.clone(),
        sha256,
        files: manifest.files.len(),
        bytes: manifest.files.iter().map(|f| f.size).sum(),
        debs,
        downloads,
        logs: logs.to_path_buf(),
    };
    log.note(&format!(
        "bundle {}: {} file(s), {} ({debs} .deb(s), {downloads} download(s)); bundle.json sha256 {}",
        opts.to.display(),
        fetched.files,
        crate::util::size::human(fetched.bytes),
        fetched.sha256
    ));
    Ok(fetched)
}
