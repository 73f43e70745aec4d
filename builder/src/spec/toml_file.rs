//! Reading TOML files (profiles, overlay.toml): one-line parse errors that name the file, the
//! line and the dotted key, and the scalar values templates and scripts see.

use anyhow::{anyhow, Result};
use std::path::Path;

/// Parses TOML into `T`, turning the parser's multi-line report into one line that names the
/// file, the line and the dotted key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let key = e.span().and_then(|s| dotted_key(text, s.start));
        let msg = e
            .message()
            .trim()
            .replace("field", "key")
            .replace('\n', " ");
        match (line, key) {
            (Some(l), Some(k)) => anyhow!("{}, line {l}: {k}: {msg}", path.display()),
            (Some(l), None) => anyhow!("{}, line {l}: {msg}", path.display()),
            _ => anyhow!("{}: {msg}", path.display()),
        }
    })
}

/// The dotted key at byte `at`: the `[table]` header above it plus the key on its line.
fn dotted_key(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[["))
            .then(|| l.trim_matches(['[', ']']).trim().to_string())
    });
    if line.starts_with('[') {
        return Some(line.trim_matches(['[', ']']).trim().to_string());
    }
    let key = line.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// A scalar TOML value as the string templates and provision scripts see.
pub fn scalar(value: &toml::Value) -> Option<serde_json::Value> {
    match value {
        toml::Value::String(s) => Some(serde_json::Value::String(s.clone())),
        toml::Value::Integer(i) => Some(serde_json::Value::from(*i)),
        toml::Value::Boolean(b) => Some(serde_json::Value::Bool(*b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_keys() {
        let t = "a = 1\n[disk]\nsize = 2\n[output]\n";
        assert_eq!(dotted_key(t, 0).as_deref(), Some("a"));
        assert_eq!(
            dotted_key(t, t.find("size").unwrap()).as_deref(),
            Some("disk.size")
        );
        assert_eq!(
            dotted_key(t, t.find("[output]").unwrap()).as_deref(),
            Some("output")
        );
    }
}
