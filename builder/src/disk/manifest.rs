//! The package manifest (`NAME.manifest`): one `package<TAB>version` line per installed
//! package, as `dpkg-query -W -f '${binary:Package}\t${Version}\n'` prints it in the tree and
//! as Ubuntu publishes beside its cloud images (`Multi-Arch: same` packages carry `:arch`).

use anyhow::{Context, Result};
use std::path::Path;

/// One stanza of a dpkg status file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub multi_arch_same: bool,
    pub installed: bool,
}

/// The packages of a dpkg status file, in file order.
pub fn parse_status(status: &str) -> Vec<Package> {
    status
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_string())
                })
            };
            Some(Package {
                name: field("Package")?,
                version: field("Version").unwrap_or_default(),
                arch: field("Architecture").unwrap_or_default(),
                multi_arch_same: field("Multi-Arch").as_deref() == Some("same"),
                installed: field("Status").is_some_and(|s| s.ends_with(" installed")),
            })
        })
        .collect()
}

/// The manifest text for a status file: installed packages, sorted.
pub fn manifest(status: &str) -> String {
    let mut lines: Vec<String> = parse_status(status)
        .into_iter()
        .filter(|p| p.installed)
        .map(|p| {
            let name = if p.multi_arch_same && !p.arch.is_empty() {
                format!("{}:{}", p.name, p.arch)
            } else {
                p.name
            };
            format!("{name}\t{}\n", p.version)
        })
        .collect();
    lines.sort();
    lines.concat()
}

/// The manifest of a root tree.
pub fn for_tree(root: &Path) -> Result<String> {
    let p = root.join("var/lib/dpkg/status");
    let status = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(manifest(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_like_dpkg_query() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u4\n\n\
Package: adduser\nStatus: install ok installed\nArchitecture: all\nVersion: 3.134\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
Package: Package-Alike\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: foreign\nVersion: 1:2.0~rc1\n";
        assert_eq!(
            manifest(status),
            "Package-Alike\t1:2.0~rc1\nadduser\t3.134\nlibc6:amd64\t2.36-9+deb12u4\n"
        );
        assert_eq!(parse_status(status).len(), 4);
    }
}
