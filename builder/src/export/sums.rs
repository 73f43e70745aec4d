//! SHA256SUMS beside the artifacts, in the format `sha256sum -c` reads.

/// The file's text: one `HASH  NAME` line per artifact, sorted by name.
pub fn render(entries: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = entries.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_format() {
        let text = render(&[("b".into(), "2".into()), ("a".into(), "1".into())]);
        assert_eq!(text, "1  a\n2  b\n");
    }
}
