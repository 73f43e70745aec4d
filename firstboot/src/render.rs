//! Rendering the appliance's configuration files from the handlebars templates shipped in
//! the image under `/etc/appliance/templates/*.handlebars` (the builder renders `*.hbs`
//! files at build time, so these carry another extension and reach the image as they are).
//!
//! Strict mode (a misspelt variable is an error, not an empty string) and no HTML escaping.
//! Instead every value goes through a helper that writes it in the syntax of the target file,
//! and a test checks that the shipped templates print nothing without one:
//!
//! | helper                  | for                         | writes                                   |
//! |-------------------------|-----------------------------|------------------------------------------|
//! | `{{lua x}}`             | prosody's Lua configuration | a double-quoted Lua string, `\ddd` escapes |
//! | `{{js x}}`              | Jitsi Meet's config.js      | a double-quoted JavaScript string; `<`, `>`, `&`, U+2028/9 as `\u` escapes so nginx's SSI and HTML see none |
//! | `{{hocon x}}`           | jicofo.conf, jvb.conf       | a quoted HOCON (= JSON) string           |
//! | `{{nginx x}}`           | nginx                       | the value bare, refused unless only letters, digits and `. _ ~ / : -` |
//! | `{{systemd_env "K" x}}` | a unit's `Environment=`     | `"K=value"`: `\` and `"` escaped, `%` doubled (specifiers); `$` is not special there |
//! | `{{properties x}}`      | Java .properties            | the value with `\`, `:`, `=`, `#`, `!` escaped, non-ASCII and controls as `\uXXXX` |
//! | `{{shell x}}`           | shell-style `KEY=value` files read by systemd and sh | the value bare, refused unless only letters, digits and `. _ / : @ + , -` |
//! | `{{env_file x}}`        | a `KEY=value` file of secrets for `EnvironmentFile=` (and sh) | a double-quoted value, `\` before `\ " $` and backquote only |
//!
//! `(concat a b ...)` joins strings inside an escaping helper: `{{lua (concat "auth." dns_name)}}`.
//!
//! Every helper refuses control characters other than those it escapes; values were checked
//! before (see [`crate::input::config`]), so a refusal here is a bug, reported with the template
//! name and line.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason, ScopedJson,
};

/// The template directory, relative to the root.
pub const TEMPLATE_DIR: &str = "etc/appliance/templates";
/// Extension of the templates.
pub const EXTENSION: &str = "handlebars";

/// The escaping helpers, by name.
pub const HELPERS: &[&str] = &[
    "lua",
    "js",
    "hocon",
    "nginx",
    "systemd_env",
    "properties",
    "shell",
    "env_file",
];

/// The loaded templates.
pub struct Templates {
    registry: Handlebars<'static>,
}

impl Templates {
    /// Loads every `*.handlebars` file of `<root>/etc/appliance/templates`.
    pub fn load(root: &Path) -> Result<Templates> {
        let dir = crate::tree::Tree::new(root).path(TEMPLATE_DIR);
        let mut texts = BTreeMap::new();
        let entries = std::fs::read_dir(&dir)
            .with_context(|| format!("reading the templates in {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
                continue;
            }
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| anyhow!("{}: not a UTF-8 name", path.display()))?
                .to_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading template {}", path.display()))?;
            texts.insert(name, text);
        }
        Templates::from_texts(texts)
    }

    /// Templates from `(name, text)` pairs.
    pub fn from_texts(texts: BTreeMap<String, String>) -> Result<Templates> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper("lua", Box::new(one(lua_string)));
        registry.register_helper("js", Box::new(one(js_string)));
        registry.register_helper("hocon", Box::new(one(hocon_string)));
        registry.register_helper("nginx", Box::new(one(nginx_value)));
        registry.register_helper("properties", Box::new(one(properties_value)));
        registry.register_helper("shell", Box::new(one(shell_value)));
        registry.register_helper("env_file", Box::new(one(env_file_value)));
        registry.register_helper("systemd_env", Box::new(systemd_env_helper));
        registry.register_helper("concat", Box::new(Concat));
        for (name, text) in texts {
            registry
                .register_template_string(&name, text)
                .map_err(|e| anyhow!("template {name}.{EXTENSION}: {e}"))?;
        }
        Ok(Templates { registry })
    }

    /// Renders template `name` with `data`.
    pub fn render(&self, name: &str, data: &serde_json::Value) -> Result<String> {
        if !self.registry.has_template(name) {
            return Err(anyhow!(
                "template {name}.{EXTENSION} is missing from /{TEMPLATE_DIR}"
            ));
        }
        self.registry.render(name, data).map_err(|e| {
            let line = e.line_no.map(|l| format!(", line {l}")).unwrap_or_default();
            anyhow!("template {name}.{EXTENSION}{line}: {}", e.reason())
        })
    }
}

/// `(concat a b ...)`: its parameters joined, as a value for another helper.
struct Concat;

impl HelperDef for Concat {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut joined = String::new();
        for i in 0..h.params().len() {
            joined.push_str(&param(h, i)?);
        }
        Ok(ScopedJson::Derived(serde_json::Value::String(joined)))
    }
}

type Escape = fn(&str) -> Result<String, String>;

/// A helper that writes its one parameter through `escape`.
fn one(
    escape: Escape,
) -> impl Fn(&Helper, &Handlebars, &Context, &mut RenderContext, &mut dyn Output) -> HelperResult
       + Send
       + Sync {
    move |h, _, _, _, out| {
        let value = param(h, 0)?;
        let text = escape(&value).map_err(|e| helper_error(h, &e))?;
        out.write(&text)?;
        Ok(())
    }
}

fn systemd_env_helper(
    h: &Helper,
    _: &Handlebars,
    _: &Context,
    _: &mut RenderContext,
    out: &mut dyn Output,
) -> HelperResult {
    let (name, value) = (param(h, 0)?, param(h, 1)?);
    let text = systemd_env(&name, &value).map_err(|e| helper_error(h, &e))?;
    out.write(&text)?;
    Ok(())
}

/// Parameter `i` as text: a string, or a number.
fn param(h: &Helper, i: usize) -> Result<String, RenderError> {
    let value = h.param(i).ok_or(RenderErrorReason::ParamNotFoundForIndex(
        "escaping helper",
        i,
    ))?;
    match value.value() {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(helper_error(
            h,
            &format!("{} is not a string or a number", other),
        )),
    }
}

fn helper_error(h: &Helper, message: &str) -> RenderError {
    RenderErrorReason::Other(format!("{}: {message}", h.name())).into()
}

fn no_controls(s: &str, allowed: &[char]) -> Result<(), String> {
    match s.chars().find(|c| c.is_control() && !allowed.contains(c)) {
        Some(c) => Err(format!("refusing control character {c:?}")),
        None => Ok(()),
    }
}

/// A double-quoted string with the escapes Lua, JavaScript and JSON share (`\\`, `\"`, `\n`,
/// `\r`, `\t`); `other` gives the escape of any other character, or `None` to keep it.
fn double_quoted(s: &str, other: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => match other(c) {
                Some(escape) => out.push_str(&escape),
                None => out.push(c),
            },
        }
    }
    out.push('"');
    out
}

/// A double-quoted Lua string literal (valid in Lua 5.1 to 5.4).
pub fn lua_string(s: &str) -> Result<String, String> {
    // Three digits always, so that a following digit is not taken into the escape.
    Ok(double_quoted(s, |c| {
        c.is_ascii_control().then(|| format!("\\{:03}", c as u32))
    }))
}

/// JSON-style escapes shared by JavaScript and HOCON; `html` also escapes `<`, `>`, `&`.
fn json_like(s: &str, html: bool) -> String {
    double_quoted(s, |c| {
        let escaped = matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') && html;
        (escaped || c.is_control()).then(|| format!("\\u{:04x}", c as u32))
    })
}

/// A double-quoted JavaScript string literal, safe in a file that nginx runs through SSI.
pub fn js_string(s: &str) -> Result<String, String> {
    Ok(json_like(s, true))
}

/// A quoted HOCON string (HOCON's quoted strings are JSON strings; `${` is not special in
/// them).
pub fn hocon_string(s: &str) -> Result<String, String> {
    Ok(json_like(s, false))
}

/// A value for nginx's configuration, written bare: only characters that nginx reads as part
/// of one plain token.
pub fn nginx_value(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("refusing an empty value".into());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._~/:-".contains(*c)))
    {
        Some(c) => Err(format!("refusing {c:?} in {s:?}")),
        None => Ok(s.to_owned()),
    }
}

/// `"NAME=value"` for a systemd unit's `Environment=`.
pub fn systemd_env(name: &str, value: &str) -> Result<String, String> {
    let good_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !good_name {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    no_controls(value, &[])?;
    let mut out = format!("\"{name}=");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// A value of a Java .properties file (read as ISO-8859-1, hence `\u` for the rest).
pub fn properties_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' | ':' | '=' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 => out.push_str("\\ "),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// A value of a `KEY=value` file that both `sh` and systemd's `EnvironmentFile=` read: bare,
/// so only characters neither treats specially.
pub fn shell_value(s: &str) -> Result<String, String> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._/:@+,-".contains(*c)))
    {
        Some(c) => Err(format!("refusing {c:?} in {s:?}")),
        None => Ok(s.to_owned()),
    }
}

/// A double-quoted value of an `EnvironmentFile=` that sh reads the same way. Only `\`, `"`,
/// `$` and the backquote are escaped: systemd 237 (Ubuntu 18.04) takes any character after a
/// backslash as itself, later versions keep the backslash before others, and sh does both
/// depending on the character; for these four all three agree. systemd expands no specifiers
/// in these files, so `%` stays as it is.
pub fn env_file_value(s: &str) -> Result<String, String> {
    no_controls(s, &[])?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            lua_string("a\"b\\c\nd\u{1}9").unwrap(),
            r#""a\"b\\c\nd\0019""#
        );
        assert_eq!(
            js_string("<!--# echo -->'\"\u{2028}").unwrap(),
            r#""\u003c!--# echo --\u003e'\"\u2028""#
        );
        assert_eq!(hocon_string("${x}\"\\").unwrap(), r#""${x}\"\\""#);
        assert_eq!(nginx_value("/etc/ssl/a-b.crt").unwrap(), "/etc/ssl/a-b.crt");
        for bad in ["a;b", "a b", "a{", "$x", "a\"", "", "a\nb", "a#b", "é"] {
            assert!(nginx_value(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            systemd_env("ADMIN_PASS", "p%h\"a\\s $x").unwrap(),
            r#""ADMIN_PASS=p%%h\"a\\s $x""#
        );
        assert!(systemd_env("ADMIN_PASS", "a\nb").is_err());
        assert_eq!(
            env_file_value("p%h \"a\\s $x `id` 'q' #").unwrap(),
            r#""p%h \"a\\s \$x \`id\` 'q' #""#
        );
        assert!(env_file_value("a\nb").is_err());
        assert!(systemd_env("1X", "a").is_err());
        assert_eq!(
            properties_value(" a:b=c#d!e\\é").unwrap(),
            "\\ a\\:b\\=c\\#d\\!e\\\\\\u00e9"
        );
        assert_eq!(
            shell_value("auth.meet.example.com").unwrap(),
            "auth.meet.example.com"
        );
        assert!(shell_value("a b").is_err() && shell_value("$(x)").is_err());
    }

    #[test]
    fn strict_and_helpers() {
        let t = |text: &str| {
            let mut m = BTreeMap::new();
            m.insert("t".to_owned(), text.to_owned());
            Templates::from_texts(m).unwrap()
        };
        let data = serde_json::json!({"name": "a\"b", "port": 3000});
        assert_eq!(
            t("x = {{lua name}} {{nginx port}}")
                .render("t", &data)
                .unwrap(),
            "x = \"a\\\"b\" 3000"
        );
        let e = t("{{lua nmae}}").render("t", &data).unwrap_err();
        assert!(
            e.to_string().starts_with("template t.handlebars, line 1: "),
            "{e}"
        );
        let e = t("\n{{nginx name}}").render("t", &data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template t.handlebars, line 2: nginx: refusing '\"' in \"a\\\"b\""
        );
        assert_eq!(
            t("{{js (concat \"a.\" name \"/\" port)}}")
                .render("t", &data)
                .unwrap(),
            "\"a.a\\\"b/3000\""
        );
        let e = t("").render("nope", &data).unwrap_err();
        assert!(e.to_string().contains("nope.handlebars is missing"), "{e}");
    }
}
