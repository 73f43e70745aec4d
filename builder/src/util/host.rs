//! Host tools: finding them, saying how to install a missing one, and running them with their
//! failure reported as one line.

use crate::util::partial;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The Debian/Ubuntu package that ships each tool this crate runs.
const PACKAGES: &[(&str, &str)] = &[
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("grub-mkimage", "grub-common"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("apt-ftparchive", "apt-utils"),
];

/// The package that provides `tool`, for the install hint.
pub fn package_of(tool: &str) -> &str {
    PACKAGES
        .iter()
        .find(|(t, _)| *t == tool)
        .map(|(_, p)| *p)
        .unwrap_or(tool)
}

/// Finds `tool` on PATH, or fails with the apt-get line that installs it.
pub fn require(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if let Ok(meta) = candidate.metadata() {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{tool} not found on PATH: install it with `apt-get install {}`",
        package_of(tool)
    )
}

/// The version `mke2fs -V` reports, as (major, minor, patch).
pub fn mke2fs_version() -> Result<(u32, u32, u32)> {
    let out = Command::new(require("mke2fs")?)
        .arg("-V")
        .output()
        .context("running mke2fs -V")?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    parse_e2fsprogs_version(&text)
        .with_context(|| format!("reading mke2fs's version from {text:?}"))
}

fn parse_e2fsprogs_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().nth(1)?;
    let mut parts = word.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// Runs a command to completion, capturing its output. A non-zero exit becomes an error naming
/// `what` and carrying the last lines the command printed. The child is registered so that
/// Ctrl-C stops it along with this process.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::util::progress::show_command(cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("{what}: starting {:?}", cmd.get_program()))?;
    let pid = child.id();
    partial::register_child(pid);
    let out = child.wait_with_output();
    partial::unregister_child(pid);
    let out = out.with_context(|| format!("{what}: waiting for {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, last_lines(&out, 3));
    }
    Ok(out)
}

/// The last `n` non-empty lines of a command's stderr (or stdout when stderr is empty), joined
/// on one line.
pub fn last_lines(out: &Output, n: usize) -> String {
    let pick = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(pick);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2fsprogs_versions() {
        assert_eq!(
            parse_e2fsprogs_version("mke2fs 1.47.2 (1-Jan-2025)\n"),
            Some((1, 47, 2))
        );
        assert_eq!(
            parse_e2fsprogs_version("mke2fs 1.44.1 (24-Mar-2018)"),
            Some((1, 44, 1))
        );
        assert_eq!(parse_e2fsprogs_version("mke2fs 1.47"), Some((1, 47, 0)));
        assert_eq!(parse_e2fsprogs_version("garbage"), None);
    }

    #[test]
    fn missing_tool_names_the_package() {
        let err = require("definitely-not-a-tool-xyz")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "definitely-not-a-tool-xyz not found on PATH: install it with `apt-get install definitely-not-a-tool-xyz`"
        );
        assert_eq!(package_of("qemu-img"), "qemu-utils");
    }

    #[test]
    fn failing_command_reports_its_last_lines() {
        let err = run(
            Command::new("sh").args(["-c", "echo one >&2; echo two >&2; exit 3"]),
            "test step",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "test step failed (exit status: 3): one / two");
    }
}
