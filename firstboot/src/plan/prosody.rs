//! Prosody's stored data that Jitsi needs: the `focus` and `jvb` accounts on
//! `auth.<dns_name>` and the focus user's roster, which jitsi-meet-prosody's postinst makes
//! with `prosodyctl register` and `prosodyctl mod_roster_command subscribe`. Written directly
//! (prosodyctl needs the running system and cannot work on `--root`), in the layout of
//! prosody's `internal` storage: `/var/lib/prosody/<host>/<store>/<user>.dat`, a Lua file
//! returning a table, with the host name encoded as prosody encodes it (every character
//! that is not a letter or digit as `%xx`).
//!
//! Accounts are stored hashed, as `authentication = "internal_hashed"` keeps them (SCRAM-SHA-1:
//! salt, iteration count, `stored_key`, `server_key`), so the passwords themselves are only in
//! the files of the components that log in.

use ring::{digest, hmac, pbkdf2};

use crate::render::lua_string;
use crate::secrets::Random;

/// Prosody's data directory.
pub const DATA_DIR: &str = "/var/lib/prosody";

/// PBKDF2 rounds; prosody reads the count from the record, so any value works.
const ITERATIONS: u32 = 4096;

/// A host or user name as prosody's storage names it on disk.
pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// The path of `user`'s record in `store` on `host`.
pub fn data_file(host: &str, store: &str, user: &str) -> String {
    format!("{DATA_DIR}/{}/{store}/{}.dat", encode(host), encode(user))
}

/// An `accounts` record for `password`, hashed with a fresh salt.
pub fn account_record(password: &str, random: &mut Random) -> String {
    let salt = random.uuid();
    let (stored_key, server_key) = scram_sha1(password, salt.as_bytes(), ITERATIONS);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    lua_record(&[
        ("iteration_count", ITERATIONS.to_string()),
        ("salt", quoted(&salt)),
        ("server_key", quoted(&hex(&server_key))),
        ("stored_key", quoted(&hex(&stored_key))),
    ])
}

/// Whether `record` (an existing `accounts` file) holds `password`, so that it can be kept
/// rather than salted anew.
pub fn account_matches(record: &str, password: &str) -> bool {
    let field = |key: &str| {
        let prefix = format!("[\"{key}\"] = ");
        record.lines().find_map(|l| {
            let value = l.trim().strip_prefix(&prefix)?.strip_suffix(';')?;
            Some(value.trim_matches('"').to_owned())
        })
    };
    let (Some(salt), Some(count), Some(stored)) =
        (field("salt"), field("iteration_count"), field("stored_key"))
    else {
        return false;
    };
    let Ok(count) = count.parse::<u32>() else {
        return false;
    };
    if count == 0 || count > 1_000_000 {
        return false;
    }
    let (want, _) = scram_sha1(password, salt.as_bytes(), count);
    let hex: String = want.iter().map(|x| format!("{x:02x}")).collect();
    hex == stored
}

/// SCRAM-SHA-1's StoredKey and ServerKey (RFC 5802 section 3).
fn scram_sha1(password: &str, salt: &[u8], iterations: u32) -> ([u8; 20], [u8; 20]) {
    let mut salted = [0u8; 20];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA1,
        std::num::NonZeroU32::new(iterations).expect("not zero"),
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    let mut out = ([0u8; 20], [0u8; 20]);
    out.0.copy_from_slice(stored_key.as_ref());
    out.1.copy_from_slice(server_key.as_ref());
    out
}

/// A `roster` record with `contact` subscribed both ways, as `mod_roster_command subscribe`
/// leaves it.
pub fn roster_record(contact: &str) -> String {
    format!(
        "return {{\n\t[false] = {{\n\t\t[\"version\"] = 1;\n\t}};\n\t[{}] = {{\n\t\t[\"groups\"] = {{}};\n\t\t[\"subscription\"] = \"both\";\n\t}};\n}};\n",
        quoted(contact)
    )
}

fn quoted(s: &str) -> String {
    lua_string(s).expect("Lua strings take any text")
}

fn lua_record(fields: &[(&str, String)]) -> String {
    let mut out = String::from("return {\n");
    for (key, value) in fields {
        out.push_str(&format!("\t[{}] = {value};\n", quoted(key)));
    }
    out.push_str("};\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            data_file("auth.meet-1.example.com", "accounts", "focus"),
            "/var/lib/prosody/auth%2emeet%2d1%2eexample%2ecom/accounts/focus.dat"
        );
    }

    #[test]
    fn scram_matches_rfc_5802() {
        // The example exchange of RFC 5802 section 5: "pencil", salt QSXCR+Q6sek8bf92.
        let salt = [
            0x41, 0x25, 0xc2, 0x47, 0xe4, 0x3a, 0xb1, 0xe9, 0x3c, 0x6d, 0xff, 0x76,
        ];
        let (stored, server) = scram_sha1("pencil", &salt, 4096);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&stored), "e9d94660c39d65c38fbad91c358f14da0eef2bd6");
        assert_eq!(hex(&server), "0fe09258b3ac852ba502cc62ba903eaacdbf7d31");
        let record = account_record("pencil", &mut Random::seeded("s", "i"));
        assert!(record.starts_with("return {\n\t[\"iteration_count\"] = 4096;\n\t[\"salt\"] = \""));
        assert!(record.contains("[\"stored_key\"] = \"") && record.ends_with("};\n"));
        assert!(account_matches(&record, "pencil"));
        assert!(!account_matches(&record, "pencil2"));
        assert!(!account_matches("return {};", "pencil"));
    }
}
