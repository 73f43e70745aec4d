//! The machine's host name: `/etc/hostname` and the `127.0.1.1` line of `/etc/hosts`, as
//! Debian and Ubuntu name a machine whose name has no fixed address.
//!
//! `/etc/hostname` gets the whole host name (see [`crate::input::config`] for which: cloud-init's
//! `fqdn` or `hostname`, else the DNS name, else meta-data's `local-hostname`), so that
//! `hostname` and `hostname -f` both give it (DESIGN.md: the DNS name is the machine's host
//! name), unless it is longer than the kernel's 64-character limit, when it gets the first
//! label. `/etc/hosts` maps the DNS name, the host name and their first labels to
//! `127.0.1.1`: local clients of the appliance's own URLs (Rocket.Chat calling ROOT_URL,
//! Jitsi's components) reach nginx without leaving the machine. Every other line of
//! /etc/hosts is kept. In IP mode the address needs no line.

/// The kernel's limit (HOST_NAME_MAX).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// What /etc/hostname holds for the host name `name`.
pub fn static_hostname(name: &str) -> &str {
    if name.len() <= MAX_HOSTNAME_LEN {
        name
    } else {
        first_label(name)
    }
}

fn first_label(name: &str) -> &str {
    name.split('.').next().unwrap_or_default()
}

/// `hosts` with its `127.0.1.1` line naming each of `names` and its first label, the first
/// name first (replaced, or added after the `127.0.0.1` line, else at the top).
pub fn hosts_with(hosts: &str, names: &[&str]) -> String {
    let mut aliases: Vec<&str> = Vec::new();
    for name in names {
        for alias in [*name, first_label(name)] {
            if !aliases.contains(&alias) {
                aliases.push(alias);
            }
        }
    }
    let line = format!("127.0.1.1\t{}", aliases.join(" "));
    let mut lines: Vec<&str> = hosts.lines().collect();
    let first_field = |l: &str| l.split_whitespace().next().unwrap_or_default().to_owned();
    let mut replaced = false;
    lines.retain(|l| {
        if first_field(l) != "127.0.1.1" {
            return true;
        }
        let keep = !replaced;
        replaced = true;
        keep
    });
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match out.iter().position(|l| first_field(l) == "127.0.1.1") {
        Some(i) => out[i] = line,
        None => {
            let at = out
                .iter()
                .position(|l| first_field(l) == "127.0.0.1")
                .map_or(0, |i| i + 1);
            out.insert(at, line);
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(s: &str) -> [&str; 1] {
        [s]
    }

    #[test]
    fn hosts() {
        let debian = "127.0.0.1\tlocalhost\n127.0.1.1\tappliance\n\n::1\tlocalhost ip6-localhost\n";
        assert_eq!(
            hosts_with(debian, &dns("meet.example.com")),
            "127.0.0.1\tlocalhost\n127.0.1.1\tmeet.example.com meet\n\n::1\tlocalhost ip6-localhost\n"
        );
        let ubuntu = "127.0.0.1 localhost\n\n# IPv6\n::1 ip6-localhost\n";
        assert_eq!(
            hosts_with(ubuntu, &dns("a.example.com")),
            "127.0.0.1 localhost\n127.0.1.1\ta.example.com a\n\n# IPv6\n::1 ip6-localhost\n"
        );
        let twice = "127.0.1.1 x\n127.0.1.1 y\n";
        assert_eq!(hosts_with(twice, &dns("a.b")), "127.0.1.1\ta.b a\n");
        assert_eq!(hosts_with("", &dns("a.b")), "127.0.1.1\ta.b a\n");
        assert_eq!(
            hosts_with("", &["meet.example.com", "single-label"]),
            "127.0.1.1\tmeet.example.com meet single-label\n"
        );
    }

    #[test]
    fn long_names() {
        let long = format!("{}.example.com", "a".repeat(60));
        assert_eq!(static_hostname(&long), "a".repeat(60));
        assert_eq!(static_hostname("meet.example.com"), "meet.example.com");
    }
}
