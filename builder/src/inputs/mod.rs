//! Where a run's external inputs come from: the network (through the mirrors), the network
//! with a copy of each input kept for a bundle (`appliance fetch`), or a bundle only
//! (`appliance build --bundle`, no network at all).
//!
//! Inside the chroot, provision.sh and the overlays' helpers see the mode in their
//! environment (see [`crate::stages::provision::Chroot`]):
//! - `APPLIANCE_MIRRORS`: a file of `PREFIX MIRROR` rules, and `appliance-mirror` on PATH
//!   (`appliance-mirror url URL` rewrites a URL); `apt-get` and `apt` on PATH read the tree's
//!   sources rewritten by the same rules.
//! - `APPLIANCE_FETCH`: the bundle being made, writable: a helper that downloads a file keeps
//!   a copy in `downloads/` (see [`crate::inputs::bundle`]); apt's installed .debs are kept by the
//!   builder.
//! - `APPLIANCE_BUNDLE`: the bundle, read-only; apt reads only its repository.
//!
//! A helper that cannot get an input prints one marker line into the step's log, which the
//! builder turns into the run's one error line ([`explain`]):
//! `appliance: missing input: URL` (not in the bundle) or `appliance: cannot download: URL`.

pub mod bundle;
pub mod download;
pub mod mirror;

use crate::inputs::bundle::Bundle;
use crate::inputs::download::Unreachable;
use crate::inputs::mirror::Mirrors;
use std::path::Path;

/// Where the bundle is seen inside the chroot (read-only).
pub const BUNDLE_IN_CHROOT: &str = "run/appliance-bundle";
/// Where the bundle being made is seen inside the chroot (writable).
pub const FETCH_IN_CHROOT: &str = "run/appliance-fetch";

const MISSING_MARK: &str = "appliance: missing input: ";
const UNREACHABLE_MARK: &str = "appliance: cannot download: ";

/// A run's source of external inputs.
#[derive(Clone, Copy)]
pub enum Inputs<'a> {
    /// Downloads (or the download cache), through the mirrors.
    Network(&'a Mirrors),
    /// Downloads through the mirrors, each kept in the bundle being made at `staging`.
    Fetch {
        mirrors: &'a Mirrors,
        staging: &'a Path,
    },
    /// The verified bundle, and nothing else.
    Bundle(&'a Bundle),
}

impl<'a> Inputs<'a> {
    /// The mirrors downloads go through (none for a bundle).
    pub fn mirrors(&self) -> Option<&'a Mirrors> {
        match self {
            Inputs::Network(m) | Inputs::Fetch { mirrors: m, .. } => Some(m),
            Inputs::Bundle(_) => None,
        }
    }
}

/// The one line for an input that cannot be downloaded: what to do without a network.
pub fn no_network_advice(
    url: &str,
    reason: Option<&str>,
    mirrors: &Mirrors,
    fetching: bool,
) -> String {
    let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
    let mirror = mirrors.hint(url);
    if fetching {
        format!("cannot download {url}{reason}: fetch on a machine that reaches it, or use a mirror you can reach ({mirror})")
    } else {
        format!(
            "cannot download {url}{reason}: without a network, build from a bundle made by `appliance fetch` (--bundle DIR), or use a mirror you can reach ({mirror})"
        )
    }
}

/// Rewrites a run's error into its one line where the cause is an input: a download without
/// an answer, or a failed step whose log names an input it could not get.
pub fn explain(err: anyhow::Error, inputs: &Inputs) -> anyhow::Error {
    let fetching = matches!(inputs, Inputs::Fetch { .. });
    let none = Mirrors::default();
    let mirrors = inputs.mirrors().unwrap_or(&none);
    if let Some(u) = err.chain().find_map(|c| c.downcast_ref::<Unreachable>()) {
        return anyhow::anyhow!(
            "{}",
            no_network_advice(&u.url, Some(&u.reason), mirrors, fetching)
        );
    }
    let Some(step) = err
        .chain()
        .find_map(|c| c.downcast_ref::<crate::sandbox::StepFailed>())
    else {
        return err;
    };
    let log = std::fs::read_to_string(&step.log).unwrap_or_default();
    let Some(cause) = input_in_log(&log, matches!(inputs, Inputs::Bundle(_))) else {
        return err;
    };
    let what = &step.what;
    let log = step.log.display();
    match (cause, inputs) {
        (LogCause::Missing(thing), Inputs::Bundle(b)) => anyhow::anyhow!(
            "{what}: the bundle {} has no {thing}: make the bundle again with `appliance fetch` for this profile and its variables (log {log})",
            b.dir().display()
        ),
        (LogCause::Missing(thing), _) => anyhow::anyhow!("{what}: no {thing} (log {log})"),
        (LogCause::Unreachable(url), _) => anyhow::anyhow!(
            "{what}: {} (log {log})",
            no_network_advice(&url, None, mirrors, fetching)
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LogCause {
    /// Not in the bundle: an input (URL) or an apt package.
    Missing(String),
    Unreachable(String),
}

/// The input a failed step's log says it could not get: the last marker line of the helpers,
/// else apt's and debootstrap's own lines (apt's "unable to locate" only counts in a bundle,
/// where it means the package was not fetched).
fn input_in_log(log: &str, bundle: bool) -> Option<LogCause> {
    let first_word = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
    let quoted = |s: &str, n: usize| s.split('\'').nth(n).unwrap_or("").to_string();
    for line in log.lines().rev() {
        let line = line.trim();
        if let Some(url) = line.strip_prefix(MISSING_MARK) {
            return Some(LogCause::Missing(url.trim().to_string()));
        }
        if let Some(url) = line.strip_prefix(UNREACHABLE_MARK) {
            return Some(LogCause::Unreachable(url.trim().to_string()));
        }
        // apt names the URL and why; only a failure to reach the host is about the network
        // (a 404 is a stale list or a wrong mirror: the step's own error says so better).
        if let Some(rest) = line.strip_prefix("E: Failed to fetch ") {
            let no_network = [
                "Temporary failure resolving",
                "Could not resolve",
                "Could not connect",
                "Connection failed",
                "Connection timed out",
                "Network is unreachable",
            ];
            if !bundle && no_network.iter().any(|n| rest.contains(n)) {
                return Some(LogCause::Unreachable(first_word(rest)));
            }
        }
        // debootstrap says no more than that.
        if let Some(rest) = line.strip_prefix("E: Failed getting release file ") {
            if !bundle {
                return Some(LogCause::Unreachable(first_word(rest)));
            }
        }
        if bundle {
            if let Some(rest) = line.strip_prefix("E: Unable to locate package ") {
                return Some(LogCause::Missing(format!(
                    "apt package {}",
                    first_word(rest)
                )));
            }
            if line.starts_with("E: Version '") && line.ends_with("was not found") {
                return Some(LogCause::Missing(format!(
                    "apt package {}={}",
                    quoted(line, 3),
                    quoted(line, 1)
                )));
            }
            if line.starts_with("E: Package '") && line.ends_with("has no installation candidate") {
                return Some(LogCause::Missing(format!(
                    "apt package {}",
                    quoted(line, 1)
                )));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_name_the_input() {
        let cases: &[(&str, bool, Option<LogCause>)] = &[
            ("x\nappliance: missing input: https://e.org/a.tgz\nfetch-pinned: ...\n", true,
                Some(LogCause::Missing("https://e.org/a.tgz".into()))),
            ("appliance: cannot download: https://e.org/k.asc\n", false,
                Some(LogCause::Unreachable("https://e.org/k.asc".into()))),
            ("E: Failed to fetch http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb  Temporary failure resolving 'deb.debian.org'\n", false,
                Some(LogCause::Unreachable("http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb".into()))),
            ("E: Failed to fetch http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb  404  Not Found [IP: 1.2.3.4 80]\n", false, None),
            ("E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release\n", false,
                Some(LogCause::Unreachable("http://deb.debian.org/debian/dists/bookworm/Release".into()))),
            ("E: Unable to locate package nosuchpkg\n", true, Some(LogCause::Missing("apt package nosuchpkg".into()))),
            // Outside a bundle, an unknown package is the profile's mistake: the step's own error.
            ("E: Unable to locate package nosuchpkg\n", false, None),
            ("E: Version '9' for 'hello' was not found\n", true, Some(LogCause::Missing("apt package hello=9".into()))),
            ("E: Package 'jq' has no installation candidate\n", true, Some(LogCause::Missing("apt package jq".into()))),
            ("all fine\n", true, None),
        ];
        for (log, bundle, want) in cases {
            assert_eq!(&input_in_log(log, *bundle), want, "{log}");
        }
    }

    #[test]
    fn advice_names_the_mirror() {
        let profile = [(
            "ubuntu-cloud-images".to_string(),
            "https://cloud-images.ubuntu.com".to_string(),
        )]
        .into_iter()
        .collect();
        let m = Mirrors::new(&profile, &[]).unwrap();
        assert_eq!(
            no_network_advice("https://cloud-images.ubuntu.com/x/SHA256SUMS", Some("host not found"), &m, false),
            "cannot download https://cloud-images.ubuntu.com/x/SHA256SUMS (host not found): without a network, build from a bundle made by `appliance fetch` (--bundle DIR), or use a mirror you can reach (--mirror ubuntu-cloud-images=URL)"
        );
        assert_eq!(
            no_network_advice("https://e.org/x", None, &m, true),
            "cannot download https://e.org/x: fetch on a machine that reaches it, or use a mirror you can reach (--mirror NAME=URL)"
        );
    }
}
