//! ufw's rule files, `/etc/ufw/user.rules` and `/etc/ufw/user6.rules`, edited the way `ufw
//! allow PORT/tcp comment appliance-firstboot` and `ufw delete` would edit them (checked
//! against ufw 0.36's output), so that the image needs no running ufw at build or apply time;
//! `ufw reload` then loads them.
//!
//! A rule is a `### tuple ###` line, its iptables lines, and a blank line, between
//! `### RULES ###` and `### END RULES ###`:
//!
//! ```text
//! ### tuple ### allow tcp 8443 0.0.0.0/0 any 0.0.0.0/0 in comment=6170...
//! -A ufw-user-input -p tcp --dport 8443 -j ACCEPT
//! ```
//!
//! (`::/0` and `ufw6-user-input` in user6.rules). Every other line is kept as it is.

/// The comment firstboot's rules carry (ufw stores it hex-encoded).
pub const COMMENT: &str = "appliance-firstboot";

const END_RULES: &str = "### END RULES ###";

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn any(self) -> &'static str {
        match self {
            Family::V4 => "0.0.0.0/0",
            Family::V6 => "::/0",
        }
    }

    fn chain(self) -> &'static str {
        match self {
            Family::V4 => "ufw-user-input",
            Family::V6 => "ufw6-user-input",
        }
    }
}

/// Whether `text` already lets TCP `port` in from anywhere (a rule of any origin).
pub fn allows_tcp(text: &str, family: Family, port: u16) -> bool {
    text.lines().any(|l| is_tcp_allow(l, family, port))
}

fn is_tcp_allow(line: &str, family: Family, port: u16) -> bool {
    let any = family.any();
    let Some(rest) = line.strip_prefix("### tuple ### ") else {
        return false;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    // action proto dport dst sport src direction [comment=...]
    fields.len() >= 7
        && fields[0] == "allow"
        && (fields[1] == "tcp" || fields[1] == "any")
        && fields[2] == port.to_string()
        && fields[3] == any
        && fields[4] == "any"
        && fields[5] == any
        && fields[6] == "in"
}

/// `text` with firstboot's TCP rule for `remove` taken out (if there) and one for `add` put
/// at the end of the rules (if not already allowed). `None` if `text` has no rules section.
pub fn edit(text: &str, family: Family, add: Option<u16>, remove: Option<u16>) -> Option<String> {
    if !text.lines().any(|l| l == END_RULES) {
        return None;
    }
    let mut lines: Vec<String> = Vec::new();
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if skipping {
            if bare.starts_with("-A ") {
                continue;
            }
            skipping = false;
            if bare.is_empty() {
                continue;
            }
        }
        if remove.is_some_and(|p| is_tcp_allow(bare, family, p) && bare.ends_with(&comment())) {
            skipping = true;
            continue;
        }
        lines.push(line.to_owned());
    }
    let mut out: String = lines.concat();
    if let Some(port) = add {
        if !allows_tcp(&out, family, port) {
            let rule = format!(
                "### tuple ### allow tcp {port} {any} any {any} in {comment}\n\
                 -A {chain} -p tcp --dport {port} -j ACCEPT\n\n",
                any = family.any(),
                comment = comment(),
                chain = family.chain(),
            );
            let at = out
                .match_indices(END_RULES)
                .map(|(i, _)| i)
                .find(|&i| i == 0 || out.as_bytes()[i - 1] == b'\n')?;
            out.insert_str(at, &rule);
        }
    }
    Some(out)
}

fn comment() -> String {
    let hex: String = COMMENT.bytes().map(|b| format!("{b:02x}")).collect();
    format!("comment={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../../tests/data/ufw/user.rules");
    const BASE6: &str = include_str!("../../tests/data/ufw/user6.rules");

    /// ufw 0.36's own output for `ufw allow 8443/tcp comment appliance-firstboot`.
    fn ufw_added(family: Family) -> String {
        let (text, any, chain) = match family {
            Family::V4 => (BASE, "0.0.0.0/0", "ufw-user-input"),
            Family::V6 => (BASE6, "::/0", "ufw6-user-input"),
        };
        text.replace(
            "\n### END RULES ###",
            &format!(
                "\n### tuple ### allow tcp 8443 {any} any {any} in \
                 comment=6170706c69616e63652d6669727374626f6f74\n\
                 -A {chain} -p tcp --dport 8443 -j ACCEPT\n\n### END RULES ###"
            ),
        )
    }

    #[test]
    fn add_and_remove_like_ufw() {
        for (family, base) in [(Family::V4, BASE), (Family::V6, BASE6)] {
            let added = edit(base, family, Some(8443), None).unwrap();
            assert_eq!(added, ufw_added(family));
            assert!(allows_tcp(&added, family, 8443));
            assert_eq!(edit(&added, family, None, Some(8443)).unwrap(), base);
            // Already allowed by the image's own rule: nothing added, and that rule is
            // never removed, as it is not firstboot's.
            assert!(allows_tcp(base, family, 3000));
            assert_eq!(edit(base, family, Some(3000), Some(3000)).unwrap(), base);
            let moved = edit(&added, family, Some(8444), Some(8443)).unwrap();
            assert!(!allows_tcp(&moved, family, 8443) && allows_tcp(&moved, family, 8444));
            assert_eq!(moved.matches("### tuple ###").count(), 6);
        }
        assert_eq!(edit("*filter\nCOMMIT\n", Family::V4, Some(1), None), None);
    }
}
