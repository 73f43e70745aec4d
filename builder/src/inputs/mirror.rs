//! Repository mirrors: `--mirror NAME=URL` in place of a repository the profile names.
//!
//! A profile names its repositories in `[mirrors]`: `NAME = "URL prefix"`. `--mirror NAME=URL`
//! replaces that prefix with URL in every URL the build downloads: the base (tarball, SHA256SUMS
//! and signature, or debootstrap's mirror), the apt sources the chroot's apt reads while
//! provisioning, and what the overlays' helpers fetch (`fetch-pinned`, `apt-key-pinned`). The
//! image still ships the original sources: debootstrap's sources.list is written back, and the
//! chroot's apt reads a rewritten copy of the sources (see [`crate::stages::provision`]), never the
//! tree's own files.
//!
//! A prefix matches a URL that equals it or continues it with `/` (trailing slashes do not
//! matter), so `http://deb.debian.org/debian` covers `.../debian/dists/...` but not
//! `.../debian-security`; the longest matching prefix wins. That is the shape of an apt cache
//! such as apt-cacher-ng (`http://cache:3142/deb.debian.org/debian`) or of any HTTP mirror or
//! reverse proxy: a URL prefix for a URL prefix. (A forward proxy is the environment's
//! `http_proxy`, which the build passes through unchanged.)

use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// One repository the profile names, and what replaces it in this run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Repository {
    pub name: String,
    /// The prefix as the profile names it, without trailing slashes.
    pub prefix: String,
    /// The `--mirror` URL given for it, without trailing slashes.
    pub mirror: Option<String>,
}

/// The profile's repositories with this run's `--mirror` overrides.
#[derive(Clone, Debug, Default)]
pub struct Mirrors {
    repositories: Vec<Repository>,
}

/// Checks a repository name (profile `[mirrors]` key or `--mirror NAME`).
pub fn check_name(name: &str) -> Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("'{name}' is not a repository name (lowercase letters, digits and '-')");
    }
    Ok(())
}

/// Checks an http(s) URL prefix and drops its trailing slashes.
pub fn normalize_prefix(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace) => {
            Ok(url.trim_end_matches('/').to_string())
        }
        _ => bail!("'{url}' is not an http:// or https:// URL"),
    }
}

/// A `--mirror NAME=URL` from the command line.
pub fn parse_mirror(text: &str) -> Result<(String, String)> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("'{text}' is not NAME=URL"))?;
    check_name(name)?;
    Ok((name.to_string(), normalize_prefix(url)?))
}

/// Whether `url` is `prefix` or continues it with a `/`.
fn covers(prefix: &str, url: &str) -> bool {
    url.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Mirrors {
    /// The profile's `[mirrors]` (already checked and normalized) with `--mirror` overrides;
    /// an override of a name the profile does not have is an error listing the names it has.
    pub fn new(profile: &BTreeMap<String, String>, overrides: &[(String, String)]) -> Result<Self> {
        let mut repositories: Vec<Repository> = profile
            .iter()
            .map(|(name, prefix)| Repository {
                name: name.clone(),
                prefix: prefix.clone(),
                mirror: None,
            })
            .collect();
        for (name, url) in overrides {
            let Some(r) = repositories.iter_mut().find(|r| &r.name == name) else {
                let known = if profile.is_empty() {
                    "none: the profile has no [mirrors] table".to_string()
                } else {
                    profile.keys().cloned().collect::<Vec<_>>().join(", ")
                };
                bail!("--mirror {name}: the profile names no such repository (known: {known})");
            };
            r.mirror = Some(url.clone());
        }
        Ok(Mirrors { repositories })
    }

    pub fn repositories(&self) -> &[Repository] {
        &self.repositories
    }

    /// The overridden repositories as (prefix, mirror), longest prefix first.
    fn rules(&self) -> Vec<(&str, &str)> {
        let mut rules: Vec<(&str, &str)> = self
            .repositories
            .iter()
            .filter_map(|r| r.mirror.as_deref().map(|m| (r.prefix.as_str(), m)))
            .collect();
        rules.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        rules
    }

    /// True when no repository is overridden.
    pub fn is_empty(&self) -> bool {
        self.repositories.iter().all(|r| r.mirror.is_none())
    }

    /// `url` with its repository's prefix replaced by the mirror, or as it is.
    pub fn apply(&self, url: &str) -> String {
        for (prefix, mirror) in self.rules() {
            if covers(prefix, url) {
                return format!("{mirror}{}", &url[prefix.len()..]);
            }
        }
        url.to_string()
    }

    /// The name of the repository `url` belongs to (by its original prefix or its mirror).
    pub fn name_for(&self, url: &str) -> Option<&str> {
        self.repositories
            .iter()
            .filter(|r| {
                covers(&r.prefix, url) || r.mirror.as_deref().is_some_and(|m| covers(m, url))
            })
            .max_by_key(|r| r.prefix.len())
            .map(|r| r.name.as_str())
    }

    /// The rules for the chroot's `appliance-mirror` tool: `PREFIX MIRROR` a line, longest
    /// prefix first (the first match wins there too).
    pub fn rules_text(&self) -> String {
        self.rules()
            .iter()
            .map(|(p, m)| format!("{p} {m}\n"))
            .collect()
    }

    /// What to suggest when `url` cannot be downloaded: the `--mirror` for its repository.
    pub fn hint(&self, url: &str) -> String {
        match self.name_for(url) {
            Some(name) => format!("--mirror {name}=URL"),
            None => "--mirror NAME=URL".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> BTreeMap<String, String> {
        [
            ("debian", "http://deb.debian.org/debian"),
            ("debian-security", "http://deb.debian.org/debian-security"),
            ("github", "https://github.com"),
            ("rocketchat-apps", "https://github.com/RocketChat"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn urls_are_rewritten_by_the_longest_prefix_on_a_path_boundary() {
        let m = Mirrors::new(
            &profile(),
            &[
                (
                    "debian".into(),
                    "http://127.0.0.1:3142/deb.debian.org/debian".into(),
                ),
                ("github".into(), "https://gh.example".into()),
                ("rocketchat-apps".into(), "https://apps.example/rc".into()),
            ],
        )
        .unwrap();
        let cases = [
            (
                "http://deb.debian.org/debian/dists/bookworm/Release",
                "http://127.0.0.1:3142/deb.debian.org/debian/dists/bookworm/Release",
            ),
            (
                "http://deb.debian.org/debian",
                "http://127.0.0.1:3142/deb.debian.org/debian",
            ),
            // Another repository that shares the text, not the path.
            (
                "http://deb.debian.org/debian-security/dists/x",
                "http://deb.debian.org/debian-security/dists/x",
            ),
            ("https://github.com/a/b", "https://gh.example/a/b"),
            (
                "https://github.com/RocketChat/Apps.Jitsi/x.zip",
                "https://apps.example/rc/Apps.Jitsi/x.zip",
            ),
            (
                "https://github.company.example/x",
                "https://github.company.example/x",
            ),
        ];
        for (from, to) in cases {
            assert_eq!(m.apply(from), to, "{from}");
        }
        assert_eq!(
            m.rules_text(),
            "https://github.com/RocketChat https://apps.example/rc\n\
             http://deb.debian.org/debian http://127.0.0.1:3142/deb.debian.org/debian\n\
             https://github.com https://gh.example\n"
        );
        assert_eq!(
            m.name_for("http://127.0.0.1:3142/deb.debian.org/debian/x"),
            Some("debian")
        );
        assert_eq!(
            m.hint("https://github.com/RocketChat/x"),
            "--mirror rocketchat-apps=URL"
        );
        assert_eq!(m.hint("https://example.org/x"), "--mirror NAME=URL");
        assert!(!m.is_empty());
        assert!(Mirrors::new(&profile(), &[]).unwrap().is_empty());
    }

    #[test]
    fn bad_mirrors_get_one_line() {
        let bad = [
            ("debian", "'debian' is not NAME=URL"),
            (
                "=http://x",
                "'' is not a repository name (lowercase letters, digits and '-')",
            ),
            (
                "Debian=http://x",
                "'Debian' is not a repository name (lowercase letters, digits and '-')",
            ),
            (
                "debian=ftp://x",
                "'ftp://x' is not an http:// or https:// URL",
            ),
            (
                "debian=http://",
                "'http://' is not an http:// or https:// URL",
            ),
            (
                "debian=http:///x",
                "'http:///x' is not an http:// or https:// URL",
            ),
            (
                "debian=http://a b",
                "'http://a b' is not an http:// or https:// URL",
            ),
        ];
        for (text, want) in bad {
            assert_eq!(parse_mirror(text).unwrap_err().to_string(), want, "{text}");
        }
        assert_eq!(
            parse_mirror("debian=http://127.0.0.1:8080/debian/").unwrap(),
            ("debian".into(), "http://127.0.0.1:8080/debian".into())
        );
        let e = Mirrors::new(&profile(), &[("debain".into(), "http://x".into())]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--mirror debain: the profile names no such repository (known: debian, debian-security, github, rocketchat-apps)"
        );
        let e =
            Mirrors::new(&BTreeMap::new(), &[("debian".into(), "http://x".into())]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--mirror debian: the profile names no such repository (known: none: the profile has no [mirrors] table)"
        );
    }
}
