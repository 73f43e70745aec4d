//! The secrets the appliance makes for itself: the passwords of Jitsi's `focus` (jicofo) and
//! `jvb` XMPP accounts, prosody's TURN secret and the videobridge's MUC nickname, which the
//! Jitsi packages generated at build time and so would be shared by every machine made from
//! the image.
//!
//! They are made once per instance id and kept in `/var/lib/appliance/secrets.json` (0600),
//! so that `reconfigure` on the same machine keeps them (and does not restart Jitsi for
//! nothing), while an image cloned into a new VM, which has a new instance id, gets new
//! ones. The file is written in the same all-or-nothing transaction as the files that use
//! them.
//!
//! Random bytes come from the system ([`ring::rand::SystemRandom`], i.e. getrandom), or, for
//! tests only, from SHA-256 of a seed, the instance id, a label and a counter (see
//! [`crate::hooks`]).

use std::fmt;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

/// Where the secrets are kept, relative to the root.
pub const SECRETS_FILE: &str = "var/lib/appliance/secrets.json";

/// Letters and digits: passwords that need no quoting in any of the files they go into.
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Length of generated passwords: 24 of 62 symbols is 142 bits.
const PASSWORD_LEN: usize = 24;

/// The generated secrets of one instance.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets {
    pub instance_id: String,
    pub focus_password: String,
    pub jvb_password: String,
    pub turn_secret: String,
    pub muc_nickname: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets {{ instance_id: {:?}, .. }}", self.instance_id)
    }
}

/// A source of random bytes: the system's, or a seeded one for tests.
pub struct Random {
    seeded: Option<(Vec<u8>, u64)>,
}

impl Random {
    pub fn system() -> Random {
        Random { seeded: None }
    }

    /// Deterministic bytes from `seed` and `instance_id`, for tests only.
    pub fn seeded(seed: &str, instance_id: &str) -> Random {
        let mut key = seed.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(instance_id.as_bytes());
        Random {
            seeded: Some((key, 0)),
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        match &mut self.seeded {
            None => ring::rand::SystemRandom::new()
                .fill(out)
                .expect("the system's random source failed"),
            Some((key, counter)) => {
                for chunk in out.chunks_mut(32) {
                    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
                    ctx.update(key);
                    ctx.update(&counter.to_le_bytes());
                    *counter += 1;
                    chunk.copy_from_slice(&ctx.finish().as_ref()[..chunk.len()]);
                }
            }
        }
    }

    /// A password of letters and digits, uniformly drawn (rejection sampling).
    pub fn password(&mut self) -> String {
        let mut out = String::with_capacity(PASSWORD_LEN);
        while out.len() < PASSWORD_LEN {
            let mut byte = [0u8];
            self.fill(&mut byte);
            // 248 = 4 * 62: the largest multiple below 256.
            if byte[0] < 248 {
                out.push(ALPHANUMERIC[usize::from(byte[0]) % ALPHANUMERIC.len()] as char);
            }
        }
        out
    }

    /// A random (version 4) UUID in its usual text form.
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

impl Secrets {
    /// New secrets for `instance_id`.
    pub fn generate(instance_id: &str, random: &mut Random) -> Secrets {
        Secrets {
            instance_id: instance_id.to_owned(),
            focus_password: random.password(),
            jvb_password: random.password(),
            turn_secret: random.password(),
            muc_nickname: random.uuid(),
        }
    }

    /// The secrets kept for `instance_id` if `stored` (the secrets file) has them, else new
    /// ones. A file that cannot be read as secrets is replaced, not an error: it only holds
    /// what can be made again.
    pub fn for_instance(stored: Option<&[u8]>, instance_id: &str, random: &mut Random) -> Secrets {
        match stored.and_then(|b| serde_json::from_slice::<Secrets>(b).ok()) {
            Some(s) if s.instance_id == instance_id && s.is_well_formed() => s,
            _ => Secrets::generate(instance_id, random),
        }
    }

    /// The secrets file's text.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("strings serialize");
        text.push('\n');
        text
    }

    /// Every secret is what [`Secrets::generate`] makes, so that none can break a file it
    /// goes into, even if the secrets file was edited.
    fn is_well_formed(&self) -> bool {
        let password = |p: &str| p.len() >= 16 && p.bytes().all(|b| b.is_ascii_alphanumeric());
        password(&self.focus_password)
            && password(&self.jvb_password)
            && password(&self.turn_secret)
            && self.muc_nickname.len() == 36
            && self
                .muc_nickname
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_repeatable_and_per_instance() {
        let a = Secrets::generate("i-1", &mut Random::seeded("s", "i-1"));
        let b = Secrets::generate("i-1", &mut Random::seeded("s", "i-1"));
        let c = Secrets::generate("i-2", &mut Random::seeded("s", "i-2"));
        assert_eq!(a, b);
        assert_ne!(a.focus_password, c.focus_password);
        assert_eq!(a.focus_password.len(), PASSWORD_LEN);
        assert!(a.is_well_formed(), "{}", a.muc_nickname);
        assert_eq!(&a.muc_nickname[14..15], "4");
    }

    #[test]
    fn system_random_differs() {
        let mut r = Random::system();
        assert_ne!(r.password(), r.password());
    }

    #[test]
    fn kept_for_the_same_instance_only() {
        let mut r = Random::seeded("s", "x");
        let a = Secrets::generate("i-1", &mut r);
        let json = a.to_json();
        assert_eq!(
            Secrets::for_instance(Some(json.as_bytes()), "i-1", &mut r),
            a
        );
        assert_ne!(
            Secrets::for_instance(Some(json.as_bytes()), "i-2", &mut r),
            a
        );
        let bad = json.replace(&a.turn_secret, "a\"b");
        assert_ne!(
            Secrets::for_instance(Some(bad.as_bytes()), "i-1", &mut r),
            a
        );
        assert!(!format!("{a:?}").contains(&a.focus_password));
    }
}
