//! Reading the appliance's settings from their two sources, before any checking.
//!
//! **User-data** is read from /var/lib/cloud/instance/user-data.txt as cloud-init stores it:
//! the raw blob the cloud handed over. Like cloud-init (`user_data.py`), a gzip blob is
//! decompressed first; if `MIME-Version:` appears in its first 4096 bytes it is a MIME
//! message whose every non-multipart part is looked at (base64 and quoted-printable decoded,
//! gzip parts decompressed); a part typed `text/cloud-config` is cloud-config, and a
//! `text/plain`, `text/x-not-multipart`, `text/x-shellscript` or decompressed part is when its
//! text starts with `#cloud-config` (case and leading blanks ignored). A blob that is not MIME
//! is cloud-config when it starts so. Other parts (scripts, boothooks, Jinja templates,
//! includes, archives) are not for us: they are listed in [`UserData::ignored_parts`] and
//! otherwise skipped, as cloud-init would run them without our help.
//!
//! From every cloud-config part, in order, the `appliance:` mapping is merged key by key (a
//! later part's `certificate` replaces an earlier part's whole `certificate`), and the
//! top-level `fqdn` and `hostname` are taken from the last part that has them. cloud-init's
//! own `merge_how` is not interpreted: it concerns cloud-init's modules, and one simple rule
//! is easier to predict. When `appliance.dns_name` is absent, `fqdn` stands in for it, else
//! `hostname`, so that plain cloud-config naming the host is enough; a valid single label
//! (`hostname: bar3-4242`) does not, being no name to serve on: it is only the machine's host
//! name, and with no DNS name the appliance runs in IP mode (see [`crate::input::config`]).
//!
//! **/etc/appliance/config.yaml** holds the same keys at its top level. It is where write_files
//! or a person can put settings, and where the apply stage records the effective
//! configuration after each successful apply.
//!
//! **Precedence** ([`Precedence`]), key by key:
//! - on the first run for an instance id (a new machine, or an image cloned into a new VM),
//!   the user-data wins: it is what the user just gave this instance, while config.yaml may
//!   be left over from the machine the image was made from. The user-data's `fqdn` or
//!   `hostname` stands in for `dns_name` before config.yaml's `dns_name` is considered;
//! - on every later run for the same instance, `reconfigure` included, config.yaml wins.
//!   After the first apply it already holds what the user-data said (the apply stage writes
//!   the effective configuration there), so the only way it differs is a deliberate edit,
//!   and a person who edits config.yaml and runs `appliance-firstboot reconfigure` expects
//!   the edit to take effect, not to be overruled by user-data that cannot be changed
//!   after launch on most clouds.
//!
//! **Limits**, so that hostile user-data cannot exhaust the machine at boot: 1 MiB for each
//! file, for the decompressed blob, and for all MIME parts decoded together; for the YAML
//! parser (serde-saphyr's budget) one document, nesting depth 32, 50,000 nodes, 100 anchors
//! and 100 aliases, 10,000 events recorded for anchors or replayed through aliases in all (a
//! "billion laughs" document is refused within milliseconds), and no duplicate keys.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::input::address::IpAddress;
pub use crate::input::address::INSTANCE_DATA;
use crate::input::error::{ConfigError, KeyPath, Origin};

/// The user-data file, relative to the root of the system.
pub const USER_DATA: &str = "var/lib/cloud/instance/user-data.txt";
/// The appliance's own configuration file, relative to the root.
pub const CONFIG_FILE: &str = "etc/appliance/config.yaml";
/// cloud-init's record of the instance id, relative to the root.
pub const INSTANCE_ID: &str = "var/lib/cloud/data/instance-id";
/// Made by cloud-init's systemd generator when it found a datasource and will run this boot
/// (ds-identify found none: `disabled` instead, and cloud-init does not run at all).
pub const CLOUD_INIT_ENABLED: &str = "run/cloud-init/enabled";
/// systemd's machine id, made at the first boot of an image that ships it empty.
pub const MACHINE_ID: &str = "etc/machine-id";

/// Largest file, decompressed blob or MIME part read.
pub const MAX_BYTES: usize = 1 << 20;

/// Content types cloud-init decompresses (`DECOMP_TYPES` in cloud-init).
const GZIP_TYPES: &[&str] = &[
    "application/gzip",
    "application/gzip-compressed",
    "application/gzipped",
    "application/x-compress",
    "application/x-compressed",
    "application/x-gunzip",
    "application/x-gzip",
    "application/x-gzip-compressed",
];

/// Content types whose real type cloud-init guesses from the first line.
const GUESSED_TYPES: &[&str] = &["text/plain", "text/x-not-multipart", "text/x-shellscript"];

/// What the user-data says for the appliance, merged over its cloud-config parts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserData {
    /// The `appliance:` keys, later parts winning.
    pub appliance: Map<String, Value>,
    /// Top-level cloud-config `fqdn`, from the last part that has it.
    pub fqdn: Option<Value>,
    /// Top-level cloud-config `hostname`, from the last part that has it.
    pub hostname: Option<Value>,
    /// How many cloud-config parts there were.
    pub cloud_config_parts: usize,
    /// Content types of the parts that are not cloud-config, in order.
    pub ignored_parts: Vec<String>,
}

/// /etc/appliance/config.yaml: the appliance's keys at the top level.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    pub settings: Map<String, Value>,
}

/// Which source wins, key by key, when both set a key (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// First run for this instance: user-data over config.yaml.
    UserData,
    /// Later runs and `reconfigure`: config.yaml over user-data.
    ConfigFile,
}

impl Precedence {
    /// The rule for a run, from the instance id recorded by the last successful apply (if
    /// any) and the current one.
    pub fn for_run(applied_instance: Option<&str>, current_instance: &str) -> Precedence {
        if applied_instance == Some(current_instance) {
            Precedence::ConfigFile
        } else {
            Precedence::UserData
        }
    }
}

/// One setting and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub path: KeyPath,
    pub value: Value,
}

/// The settings to check: the appliance's keys (`dns_name`, `root_url`, ... and any unknown
/// ones) after precedence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub entries: BTreeMap<String, Entry>,
    /// Whether the user-data held any cloud-config (for a clearer "missing" message).
    pub user_data_has_cloud_config: bool,
    /// The host name cloud-init's user-data keys give: `fqdn`, else `hostname`.
    pub host_name: Option<Entry>,
    /// Meta-data's `local-hostname` (see [`crate::input::address`]).
    pub local_hostname: Option<String>,
    /// Where IP mode serves, when no DNS name is given.
    pub address: IpAddress,
}

/// Both sources, as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    pub user_data: UserData,
    pub config_file: Option<ConfigFile>,
}

impl Sources {
    /// Reads user-data and config.yaml under `root`. A missing file is an empty source.
    pub fn read(root: &Path) -> Result<Sources, Vec<ConfigError>> {
        let user_data = read_limited(&crate::tree::Tree::new(root).path(USER_DATA), "user-data");
        let config_file = read_limited(
            &crate::tree::Tree::new(root).path(CONFIG_FILE),
            "config.yaml",
        );
        match (user_data, config_file) {
            (Ok(user_data), Ok(config_file)) => Sources::parse(
                user_data.as_deref().unwrap_or_default(),
                config_file.as_deref(),
            ),
            (user_data, config_file) => Err(user_data
                .err()
                .into_iter()
                .chain(config_file.err())
                .collect()),
        }
    }

    /// Parses the user-data blob and, if there is one, config.yaml's text.
    pub fn parse(
        user_data: &[u8],
        config_file: Option<&[u8]>,
    ) -> Result<Sources, Vec<ConfigError>> {
        let user_data = parse_user_data(user_data);
        let config_file = config_file.map(parse_config_file).transpose();
        match (user_data, config_file) {
            (Ok(user_data), Ok(config_file)) => Ok(Sources {
                user_data,
                config_file,
            }),
            (user_data, config_file) => {
                let mut errors = user_data.err().unwrap_or_default();
                errors.extend(config_file.err());
                Err(errors)
            }
        }
    }

    /// The settings in force under `precedence`.
    pub fn settings(&self, precedence: Precedence) -> Settings {
        let from_user_data = self.user_data.entries();
        let from_file: BTreeMap<String, Entry> = self
            .config_file
            .iter()
            .flat_map(|f| &f.settings)
            .map(|(key, value)| {
                let path = KeyPath::new(Origin::ConfigFile, key);
                let entry = Entry {
                    path,
                    value: value.clone(),
                };
                (key.clone(), entry)
            })
            .collect();
        let (mut entries, winner) = match precedence {
            Precedence::UserData => (from_file, from_user_data),
            Precedence::ConfigFile => (from_user_data, from_file),
        };
        entries.extend(winner);
        Settings {
            entries,
            user_data_has_cloud_config: self.user_data.cloud_config_parts > 0,
            host_name: self.user_data.host_name(),
            ..Settings::default()
        }
    }
}

impl UserData {
    /// The appliance's keys as the user-data sets them, `fqdn` or `hostname` standing in
    /// for an absent `dns_name`.
    fn entries(&self) -> BTreeMap<String, Entry> {
        let mut entries: BTreeMap<String, Entry> = self
            .appliance
            .iter()
            .map(|(key, value)| {
                let entry = Entry {
                    path: KeyPath::new(Origin::UserData, key),
                    value: value.clone(),
                };
                (key.clone(), entry)
            })
            .collect();
        if !entries.contains_key("dns_name") {
            let single_label = |v: &Value| {
                v.as_str().is_some_and(|s| {
                    crate::input::names::check_labels(s).is_ok_and(|n| !n.contains('.'))
                })
            };
            if let Some(entry) = self.host_name().filter(|e| !single_label(&e.value)) {
                entries.insert("dns_name".into(), entry);
            }
        }
        entries
    }

    /// cloud-config's `fqdn`, else `hostname`, as cloud-init picks the host name.
    fn host_name(&self) -> Option<Entry> {
        [("fqdn", &self.fqdn), ("hostname", &self.hostname)]
            .into_iter()
            .find_map(|(key, value)| {
                value.as_ref().map(|v| Entry {
                    path: KeyPath::new(Origin::CloudConfig, key),
                    value: v.clone(),
                })
            })
    }

    /// Adds one cloud-config document: its `appliance` keys over the earlier ones.
    fn merge(&mut self, doc: Map<String, Value>) -> Result<(), ConfigError> {
        self.cloud_config_parts += 1;
        for (key, value) in doc {
            match key.as_str() {
                "fqdn" => self.fqdn = Some(value),
                "hostname" => self.hostname = Some(value),
                "appliance" => match value {
                    Value::Object(map) => self.appliance.extend(map),
                    Value::Null => {
                        return Err(ConfigError::Empty {
                            path: KeyPath::root(Origin::UserData),
                        })
                    }
                    other => {
                        return Err(ConfigError::WrongType {
                            path: KeyPath::root(Origin::UserData),
                            expected: "a mapping",
                            found: kind(&other),
                        })
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }
}

/// A MIME part (or the whole blob) as far as the appliance is concerned.
enum Part {
    CloudConfig(String),
    /// Not for us: its content type.
    Other(String),
}

/// Reads the user-data blob (plain, gzip, MIME multipart; see the module doc). All problems
/// found are returned, one per part at most.
pub fn parse_user_data(bytes: &[u8]) -> Result<UserData, Vec<ConfigError>> {
    let blob = maybe_gunzip(bytes, "user-data").map_err(|e| vec![e])?;
    let head = &blob[..blob.len().min(4096)];
    let parts = if blob.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else if head
        .to_ascii_lowercase()
        .windows(13)
        .any(|w| w == b"mime-version:")
    {
        mime_parts(&blob)?
    } else {
        vec![(
            "user-data".to_owned(),
            guessed_part(blob, "user-data", "text/x-not-multipart"),
        )]
    };
    let mut user_data = UserData::default();
    let mut errors = Vec::new();
    for (input, part) in parts {
        match part {
            Ok(Part::CloudConfig(text)) => {
                if let Err(e) = parse_yaml(&text, &input).and_then(|doc| user_data.merge(doc)) {
                    errors.push(e);
                }
            }
            Ok(Part::Other(ctype)) => user_data.ignored_parts.push(ctype),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(user_data)
    } else {
        Err(errors)
    }
}

/// Parts with their names for messages (`user-data part N`), each read or refused.
type Parts = Vec<(String, Result<Part, ConfigError>)>;

/// The leaf parts of a MIME message, decoded as cloud-init does. All parts together may
/// decode to at most [`MAX_BYTES`].
fn mime_parts(blob: &[u8]) -> Result<Parts, Vec<ConfigError>> {
    let message =
        mailparse::parse_mail(blob).map_err(|e| vec![ConfigError::Mime(e.to_string())])?;
    let leaves = message.parts().filter(|p| {
        !p.ctype
            .mimetype
            .to_ascii_lowercase()
            .starts_with("multipart/")
    });
    let mut decoded = 0;
    let mut parts = Vec::new();
    for (n, part) in leaves.enumerate() {
        let input = format!("user-data part {}", n + 1);
        let mimetype = part.ctype.mimetype.to_ascii_lowercase();
        let body = match part.get_body_raw() {
            Ok(body) => body,
            Err(e) => {
                let error = ConfigError::Mime(format!("part {}: {e}", n + 1));
                parts.push((input, Err(error)));
                continue;
            }
        };
        let gzipped = GZIP_TYPES.contains(&mimetype.as_str());
        let body = if gzipped {
            match gunzip(&body, &input) {
                Ok(body) => body,
                Err(e) => {
                    parts.push((input, Err(e)));
                    continue;
                }
            }
        } else {
            body
        };
        decoded += body.len();
        within_limit(decoded, "user-data", true).map_err(|e| vec![e])?;
        let part = if gzipped {
            guessed_part(body, &input, "application/gzip")
        } else if mimetype == "text/cloud-config" {
            utf8(body, &input).map(Part::CloudConfig)
        } else if GUESSED_TYPES.contains(&mimetype.as_str()) {
            guessed_part(body, &input, &mimetype)
        } else {
            Ok(Part::Other(mimetype))
        };
        parts.push((input, part));
    }
    Ok(parts)
}

/// A payload whose type its first line tells; `ctype` is what it is called otherwise.
fn guessed_part(body: Vec<u8>, input: &str, ctype: &str) -> Result<Part, ConfigError> {
    match guess_type(&body) {
        "text/cloud-config" => Ok(Part::CloudConfig(utf8(body, input)?)),
        "text/plain" => Ok(Part::Other(ctype.to_owned())),
        guessed => Ok(Part::Other(guessed.to_owned())),
    }
}

/// Reads /etc/appliance/config.yaml's text.
pub fn parse_config_file(bytes: &[u8]) -> Result<ConfigFile, ConfigError> {
    within_limit(bytes.len(), "config.yaml", false)?;
    let text = utf8(bytes.to_vec(), "config.yaml")?;
    Ok(ConfigFile {
        settings: parse_yaml(&text, "config.yaml")?,
    })
}

/// The instance id cloud-init gave this boot: `v1.instance_id` of instance-data.json, else
/// the instance-id file (older cloud-init, or instance data not yet written); on a machine
/// where cloud-init found no datasource, `machine-` and the machine id.
pub fn instance_id(root: &Path) -> Result<String, ConfigError> {
    let from_json = || -> Option<String> {
        let bytes = std::fs::read(crate::tree::Tree::new(root).path(INSTANCE_DATA)).ok()?;
        let data: Value = serde_json::from_slice(&bytes).ok()?;
        Some(data.get("v1")?.get("instance_id")?.as_str()?.to_owned())
    };
    let from_file = || -> Option<String> {
        let text = std::fs::read_to_string(crate::tree::Tree::new(root).path(INSTANCE_ID)).ok()?;
        Some(text.trim().to_owned())
    };
    // A machine booted without any datasource (a disk imported into a hypervisor, no seed):
    // cloud-init's generator disabled it, so no instance id will ever come. The machine id
    // stands in, so the appliance still comes up (in IP mode, there being no user-data); a seed
    // attached later brings cloud-init's own id, which is a new instance. While cloud-init is
    // enabled its id is awaited, never replaced: a missing one is then an error.
    let from_machine_id = || -> Option<String> {
        if root.join(CLOUD_INIT_ENABLED).exists() {
            return None;
        }
        let text = std::fs::read_to_string(root.join(MACHINE_ID)).ok()?;
        let id = text.trim();
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("machine-{id}"))
    };
    let id = from_json()
        .or_else(from_file)
        .or_else(from_machine_id)
        .ok_or_else(|| {
            ConfigError::InstanceId(format!(
                "neither /{INSTANCE_DATA} (v1.instance_id) nor /{INSTANCE_ID} gives one, and /{MACHINE_ID} (used when cloud-init found no datasource) holds no machine id"
            ))
        })?;
    if id.is_empty() || id.len() > 255 || id.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ConfigError::InstanceId(format!(
            "{:?} is not an instance id",
            crate::input::error::shown(&id)
        )));
    }
    Ok(id)
}

/// Reads at most [`MAX_BYTES`]; `None` for a file that does not exist.
fn read_limited(path: &Path, input: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let io = |e: std::io::Error| ConfigError::Io {
        file: path.display().to_string(),
        error: e.to_string(),
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    within_limit(bytes.len(), input, false)?;
    Ok(Some(bytes))
}

/// Refuses more than [`MAX_BYTES`] of `input`.
fn within_limit(len: usize, input: &str, decompressed: bool) -> Result<(), ConfigError> {
    if len > MAX_BYTES {
        return Err(ConfigError::TooLarge {
            input: input.into(),
            limit: MAX_BYTES,
            decompressed,
        });
    }
    Ok(())
}

/// Decompresses `bytes` if they start with gzip's magic number.
fn maybe_gunzip(bytes: &[u8], input: &str) -> Result<Vec<u8>, ConfigError> {
    within_limit(bytes.len(), input, false)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        gunzip(bytes, input)
    } else {
        Ok(bytes.to_vec())
    }
}

/// gzip (all members) to at most [`MAX_BYTES`].
fn gunzip(bytes: &[u8], input: &str) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ConfigError::Gzip {
            input: input.into(),
            error: e.to_string(),
        })?;
    within_limit(out.len(), input, true)?;
    Ok(out)
}

fn utf8(bytes: Vec<u8>, input: &str) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
        input: input.into(),
    })
}

/// cloud-init's `type_from_starts_with`: the content type a payload's first characters name.
fn guess_type(bytes: &[u8]) -> &'static str {
    const STARTS: &[(&str, &str)] = &[
        ("#cloud-config-archive", "text/cloud-config-archive"),
        ("#cloud-config-jsonp", "text/cloud-config-jsonp"),
        ("## template: jinja", "text/jinja2"),
        ("#cloud-boothook", "text/cloud-boothook"),
        ("#include-once", "text/x-include-once-url"),
        ("#part-handler", "text/part-handler"),
        ("#cloud-config", "text/cloud-config"),
        ("#include", "text/x-include-url"),
        ("#!", "text/x-shellscript"),
    ];
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let head = bytes[start..bytes.len().min(start + 32)].to_ascii_lowercase();
    STARTS
        .iter()
        .find(|(prefix, _)| head.starts_with(prefix.as_bytes()))
        .map_or("text/plain", |(_, ctype)| ctype)
}

/// One YAML document that must be a mapping (or empty), within the limits of the module doc.
pub fn parse_yaml(text: &str, input: &str) -> Result<Map<String, Value>, ConfigError> {
    use serde_saphyr::options::DuplicateKeyPolicy;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1,
            max_depth: 32,
            max_nodes: 50_000,
            max_events: 200_000,
            max_anchors: 100,
            max_aliases: 100,
            max_total_scalar_bytes: MAX_BYTES,
            flow_nesting_limit: 32,
            max_recorded_anchor_events: 10_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
    };
    let value: Value = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let render = serde_saphyr::render_options! {
            formatter: &serde_saphyr::UserMessageFormatter,
            snippets: serde_saphyr::SnippetMode::Off,
        };
        let message = e.render_with_options(render);
        ConfigError::Yaml {
            input: input.into(),
            error: message.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    })?;
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        other => Err(ConfigError::NotMapping {
            input: input.into(),
            found: kind(&other),
        }),
    }
}

/// "a string", "a list", ... for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_like_cloud_init() {
        assert_eq!(guess_type(b"  #Cloud-Config\na: 1"), "text/cloud-config");
        assert_eq!(
            guess_type(b"#cloud-config-archive\n"),
            "text/cloud-config-archive"
        );
        assert_eq!(guess_type(b"#!/bin/sh\n"), "text/x-shellscript");
        assert_eq!(
            guess_type(b"## template: jinja\n#cloud-config"),
            "text/jinja2"
        );
        assert_eq!(guess_type(b"hello"), "text/plain");
        assert_eq!(guess_type(b""), "text/plain");
    }

    #[test]
    fn precedence_for_run() {
        assert_eq!(Precedence::for_run(None, "i-1"), Precedence::UserData);
        assert_eq!(
            Precedence::for_run(Some("i-0"), "i-1"),
            Precedence::UserData
        );
        assert_eq!(
            Precedence::for_run(Some("i-1"), "i-1"),
            Precedence::ConfigFile
        );
    }
}
