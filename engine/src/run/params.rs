//! A workload's `[params]` checked against the keys its plugin declares (SDK 1.2's `keys`), before
//! anything runs: an unknown key or a value of the wrong type is a workload error (exit 2) naming
//! where it was written, the plugin, and what it takes — not a plugin fault after the run began.
//! A plugin that declares no keys gets its `[params]` as they are.

use crate::error::{Error, Result};
use crate::plugin::PluginMeta;
use crate::run::workload::{nearest, Plan};
use crate::untrusted::{echo, sanitize};

/// Checks `plan`'s `[params]` against `meta`'s declared keys.
pub fn check(plan: &Plan, meta: &PluginMeta) -> Result<()> {
    let Some(keys) = &meta.keys else { return Ok(()) };
    let names: Vec<&str> = keys.keys().map(String::as_str).filter(|k| !k.is_empty()).collect();
    let plugin = format!("{} {}", sanitize(&meta.name, 100), sanitize(&meta.version, 50));
    for (key, value, at) in &plan.params {
        let bad = |message: String| Error::Workload { at: at.clone(), message: format!("params.{key}: {message}") };
        let Some(kind) = keys.get(key).filter(|_| !key.is_empty()) else {
            let hint = nearest(key, &names).map_or(String::new(), |n| format!(" (did you mean '{n}'?)"));
            return Err(bad(format!(
                "plugin '{plugin}' takes no such param{hint}; it takes: {}",
                names.iter().map(|n| sanitize(n, 64)).collect::<Vec<_>>().join(", ")
            )));
        };
        if let (toml::Value::String(s), true) = (value, kind.contains('|')) {
            if !kind.split('|').any(|c| c == s) {
                return Err(bad(format!(
                    "unknown {key} '{}': plugin '{plugin}' takes one of {}",
                    echo(s),
                    one_of(kind)
                )));
            }
        }
        if let Some(why) = mismatch(value, kind) {
            return Err(bad(format!("'{}' {why}, as plugin '{plugin}' takes it", echo(&value.to_string()))));
        }
    }
    Ok(())
}

/// Why `value` is not of `kind`, if it is not.
fn mismatch(value: &toml::Value, kind: &str) -> Option<String> {
    use toml::Value::{Array, Boolean, Float, Integer, String as Text, Table};
    let ok = match (kind, value) {
        ("integer", Integer(_)) | ("number", Integer(_) | Float(_)) | ("boolean", Boolean(_)) => true,
        ("string", Text(_)) | ("list", Array(_)) | ("table", Table(_)) | ("any", _) => true,
        ("size", Integer(n)) => *n >= 0,
        ("size", Text(s)) => crate::size::parse_size(s).is_ok(),
        (k, Text(s)) if k.contains('|') => k.split('|').any(|c| c == s),
        ("integer" | "number" | "boolean" | "string" | "size" | "list" | "table", _) => false,
        (k, _) if k.contains('|') => false,
        // A type this engine does not know yet: the plugin checks it.
        _ => true,
    };
    if ok {
        return None;
    }
    Some(match kind {
        "integer" => "is not an integer".into(),
        "number" => "is not a number".into(),
        "boolean" => "is not true or false".into(),
        "string" => "is not a string".into(),
        "list" => "is not a list ([…])".into(),
        "table" => "is not a table ({ … })".into(),
        "size" => "is not a size (bytes, or a string such as \"4MiB\")".into(),
        k => format!("is not one of {}", one_of(k)),
    })
}

/// The strings an enumerated kind (`"none|crc|verify"`) accepts, quoted: `"none", "crc", "verify"`.
fn one_of(kind: &str) -> String {
    kind.split('|').map(|c| format!("\"{}\"", sanitize(c, 64))).collect::<Vec<_>>().join(", ")
}
