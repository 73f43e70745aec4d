//! Values shown in messages: a leaf, so that the value checkers ([`super::names`] and the
//! others) and the error kinds built on them ([`super::error`]) both use it.

/// A user-supplied string for a message: quoted by `{:?}` where it is used, cut to a length
/// that keeps the line readable.
pub fn shown(value: &str) -> String {
    cut(value, 80)
}

/// The first `keep` characters of `text`, and "..." if there were more.
pub fn cut(text: &str, keep: usize) -> String {
    match text.char_indices().nth(keep) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}
