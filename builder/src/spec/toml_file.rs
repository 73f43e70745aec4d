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

/// A key's comment in a TOML table: the evidence beside a pin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyComment {
    /// The comment lines right above the key (after the last blank line), without their `#`;
    /// empty when there are none.
    pub text: String,
    /// The first key of this key's paragraph (keys with no blank line between them) when that
    /// is another key with a comment: its comment is about this key too.
    pub paragraph: Option<String>,
}

/// The comment of every key of `table` in the TOML `text` that has one of its own or is in a
/// paragraph whose first commented key has one, in the table's order.
pub fn comments_of(text: &str, table: &str) -> Result<Vec<(String, KeyComment)>> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| anyhow!("{e}"))?;
    let Some(t) = doc.get(table).and_then(toml_edit::Item::as_table) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut head: Option<String> = None;
    for (i, (key, _)) in t.iter().enumerate() {
        let prefix = t
            .key(key)
            .and_then(|k| k.leaf_decor().prefix())
            .and_then(|p| p.as_str())
            .unwrap_or("");
        let lines: Vec<&str> = prefix.lines().collect();
        let start = lines
            .iter()
            .rposition(|l| l.trim().is_empty())
            .map_or(0, |i| i + 1);
        if start > 0 || i == 0 {
            head = None;
        }
        let own: Vec<&str> = lines[start..]
            .iter()
            .filter_map(|l| l.trim().strip_prefix('#'))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect();
        let paragraph = head.clone();
        if head.is_none() && !own.is_empty() {
            head = Some(key.to_string());
        }
        if !own.is_empty() || paragraph.is_some() {
            out.push((
                key.to_string(),
                KeyComment {
                    text: own.join("\n"),
                    paragraph,
                },
            ));
        }
    }
    Ok(out)
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

    #[test]
    fn comments_above_keys_and_their_paragraphs() {
        let t = "# the file\nname = \"x\"\n\n# the table\n[variables]\n# head of A\n# second line\na_version = \"1\"\na_url = \"u\"\n#  own\na_sha256 = \"s\"\n\nlone = 1\n\n# detached\n\nb = 2\n[other]\n# not variables\nc = 3\n";
        let got = comments_of(t, "variables").unwrap();
        let c = |text: &str, paragraph: Option<&str>| KeyComment {
            text: text.into(),
            paragraph: paragraph.map(Into::into),
        };
        assert_eq!(
            got,
            vec![
                ("a_version".into(), c("head of A\nsecond line", None)),
                ("a_url".into(), c("", Some("a_version"))),
                ("a_sha256".into(), c(" own", Some("a_version"))),
            ]
        );
        assert!(comments_of(t, "nothing").unwrap().is_empty());
    }
}
