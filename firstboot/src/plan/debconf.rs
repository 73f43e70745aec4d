//! debconf's answers for the Jitsi packages: the host name questions and the generated
//! passwords, set to this instance's, so that a package upgrade (whose postinst reads them;
//! jicofo's rewrites `/etc/jitsi/jicofo/config` whenever `jitsi-videobridge/jvb-hostname`
//! differs from it) does not configure the placeholder domain or the image's secrets again.
//!
//! debconf keeps them in `/var/cache/debconf/config.dat` (0644) and `passwords.dat` (0600),
//! stanzas of `Field: value` lines separated by blank lines; the `Value:` line of a
//! question's stanza is replaced (or added after its `Template:` line). Files written with
//! the rest of the apply, so no `debconf-set-selections` is needed (which could not work on
//! `--root`). The TURN secret is not put in the world-readable config.dat: jitsi-meet-prosody
//! only uses its answer when it writes a new prosody host file, which firstboot's is not.

/// config.dat, as on the appliance.
pub const CONFIG_DAT: &str = "/var/cache/debconf/config.dat";
/// passwords.dat, as on the appliance.
pub const PASSWORDS_DAT: &str = "/var/cache/debconf/passwords.dat";

/// `text` with each named question's value set; questions it has no stanza for are left out
/// (debconf owns the stanzas, with their templates and owners).
pub fn with_values(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    for stanza in text.split_inclusive("\n\n") {
        let name = stanza
            .lines()
            .find_map(|l| l.strip_prefix("Name: "))
            .map(str::trim);
        match values.iter().find(|(q, _)| Some(*q) == name) {
            Some((_, value)) => out.push_str(&set_value(stanza, value)),
            None => out.push_str(stanza),
        }
    }
    out
}

fn set_value(stanza: &str, value: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut done = false;
    for line in stanza.split_inclusive('\n') {
        if line.starts_with("Value:") {
            if !done {
                lines.push(format!("Value: {value}\n"));
                done = true;
            }
            continue;
        }
        lines.push(line.to_owned());
        if line.starts_with("Template:") && !done && !stanza.contains("\nValue:") {
            lines.push(format!("Value: {value}\n"));
            done = true;
        }
    }
    lines.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_set() {
        let text = "Name: a/b\nTemplate: a/b\nValue: old\nOwners: x\n\n\
                    Name: c/d\nTemplate: c/d\nOwners: y\nFlags: seen\n\n\
                    Name: e/f\nTemplate: e/f\nValue: keep\nOwners: z\n";
        assert_eq!(
            with_values(text, &[("a/b", "new"), ("c/d", "set"), ("g/h", "none")]),
            "Name: a/b\nTemplate: a/b\nValue: new\nOwners: x\n\n\
             Name: c/d\nTemplate: c/d\nValue: set\nOwners: y\nFlags: seen\n\n\
             Name: e/f\nTemplate: e/f\nValue: keep\nOwners: z\n"
        );
    }
}
