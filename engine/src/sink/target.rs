//! A workload's `[target]`: the URI picks the backend, and the backend reads its own keys.
//!
//! A workload may carry settings for every kind of target at once — `[target.file]`, `[target.s3]`,
//! `[target.azure]` beside `[target] uri` — so `--set target.uri=…` alone moves it between them.
//! Every table is checked (a typo under `[target.s3]` is found on a file run too); only the URI's
//! kind is used. Keys written directly under `[target]` belong to the URI's kind (the original,
//! flat form); one that belongs to another kind is named as such.

use super::azure::{AzureOptions, AzureTarget};
use super::dev::DevTarget;
use super::file::{FileSink, FileTarget};
use super::s3::{S3Options, S3Target};
use super::{NullSink, Sink};
use crate::error::{Error, Result};
use crate::keys::{Keys, Locate};
use std::sync::Arc;

/// Where a run writes, checked and ready to open.
#[derive(Clone, Debug)]
pub enum Target {
    File(FileTarget),
    /// `null://`: everything is generated and discarded (measures the engine and the plugin alone).
    Null,
    S3(S3Target),
    Azure(AzureTarget),
    /// `dev:///dev/NAME`: a block device, for jobs of the operations engine.
    Dev(DevTarget),
}

/// The URI when a workload gives none.
pub const DEFAULT_URI: &str = "file://./dgen-out";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    File,
    Null,
    S3,
    Azure,
    Dev,
}

const KINDS: [Kind; 5] = [Kind::File, Kind::Null, Kind::S3, Kind::Azure, Kind::Dev];

impl Kind {
    /// The subtable's name: `[target.s3]`.
    fn table(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Null => "null",
            Kind::S3 => "s3",
            Kind::Azure => "azure",
            Kind::Dev => "dev",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Kind::File => "file://",
            Kind::Null => "null://",
            Kind::S3 => "s3://",
            Kind::Azure => "az://",
            Kind::Dev => "dev://",
        }
    }

    fn of(uri: &str) -> Option<Kind> {
        KINDS.into_iter().find(|k| uri.starts_with(k.scheme()))
    }

    fn keys(self) -> Vec<&'static str> {
        let cloud = super::cloud::KEYS.iter();
        match self {
            Kind::File => super::file::KEYS.to_vec(),
            Kind::Null => Vec::new(),
            Kind::S3 => super::s3::KEYS.iter().chain(cloud).copied().collect::<Vec<_>>(),
            Kind::Azure => super::azure::KEYS.iter().chain(cloud).copied().collect::<Vec<_>>(),
            Kind::Dev => super::dev::KEYS.to_vec(),
        }
    }

    /// Reads this kind's settings; with a URI, the target too.
    fn configure(self, uri: Option<&str>, mut keys: Keys) -> Result<Option<Target>> {
        let known = self.keys();
        let target = match self {
            Kind::File => {
                let options = FileTarget::options(&mut keys)?;
                uri.map(|u| FileTarget::new(u, options)).transpose()?.map(Target::File)
            }
            Kind::Null => uri.map(|u| if u == "null://" { Ok(Target::Null) } else { Err(bad_null(u)) }).transpose()?,
            Kind::S3 => {
                let options = S3Options::from_keys(&mut keys)?;
                uri.map(|u| S3Target::new(u, options)).transpose()?.map(Target::S3)
            }
            Kind::Azure => {
                let options = AzureOptions::from_keys(&mut keys)?;
                uri.map(|u| AzureTarget::new(u, options)).transpose()?.map(Target::Azure)
            }
            Kind::Dev => {
                let options = DevTarget::options(&mut keys)?;
                uri.map(|u| DevTarget::new(u, options)).transpose()?.map(Target::Dev)
            }
        };
        keys.finish(&known)?;
        Ok(target)
    }
}

fn bad_null(uri: &str) -> Error {
    Error::InvalidValue { key: "target.uri", value: uri.into(), reason: "is not null:// (it takes no path)".into() }
}

/// What to call the kinds a key belongs to, in "is … key".
fn owners_phrase(owners: &[Kind]) -> &'static str {
    match owners {
        [Kind::File] => "a file://",
        [Kind::S3] => "an s3://",
        [Kind::Azure] => "an az://",
        [Kind::Dev] => "a dev://",
        _ => "an object-store",
    }
}

impl Target {
    /// Checks a workload's `[target]` table (see the module doc); `locate` says where a key is written.
    pub fn configure(table: &toml::Table, locate: Locate) -> Result<Target> {
        let uri_error = |value: &str, why: &str| Error::Workload {
            at: locate("target", "uri"),
            message: format!("target.uri: '{value}' {why}"),
        };
        let uri = match table.get("uri") {
            None => DEFAULT_URI.to_string(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(v) => return Err(uri_error(&v.to_string(), "is not a string")),
        };
        let kind =
            Kind::of(&uri).ok_or_else(|| uri_error(&uri, "is not a file://, s3://, az://, dev:// or null:// URI"))?;
        let mut active = Keys::new(locate);
        for (key, value) in table {
            if key == "uri" || KINDS.iter().any(|k| k.table() == key) {
                continue;
            }
            if kind.keys().contains(&key.as_str()) {
                active.add("target", key, value.clone())?;
                continue;
            }
            let owners: Vec<Kind> = KINDS.into_iter().filter(|k| k.keys().contains(&key.as_str())).collect();
            let message = if owners.is_empty() {
                format!("target.{key}: unknown key; [target] takes uri, the tables [target.file], [target.s3], [target.azure], [target.dev], and the keys of the URI's kind directly")
            } else {
                // The two stores' names for the same thing.
                let hint = match (key.as_str(), kind) {
                    ("part_size", Kind::Azure) => " (Azure calls it block_size)",
                    ("block_size", Kind::S3) => " (S3 calls it part_size)",
                    _ => "",
                };
                let sub = owners[0].table();
                format!(
                    "target.{key}: is {} key{hint}; the target is '{uri}' (under [target.{sub}] it is kept for when the target is one)",
                    owners_phrase(&owners)
                )
            };
            return Err(Error::Workload { at: locate("target", key), message });
        }
        let mut chosen = None;
        for k in KINDS {
            let name = format!("target.{}", k.table());
            let sub = match table.get(k.table()) {
                None if k != kind => continue,
                None => None,
                Some(toml::Value::Table(t)) => Some(t),
                Some(_) => {
                    let message = format!("{name}: expected a table of {} settings", k.table());
                    return Err(Error::Workload { at: locate("target", k.table()), message });
                }
            };
            if k == kind {
                if let Some(t) = sub {
                    active.add_table(&name, t)?;
                }
                let keys = std::mem::replace(&mut active, Keys::new(locate));
                chosen = k.configure(Some(&uri), keys).map_err(|e| located_uri(e, locate))?;
            } else if let Some(t) = sub {
                let mut keys = Keys::new(locate);
                keys.add_table(&name, t)?;
                k.configure(None, keys)?;
            }
        }
        Ok(chosen.expect("the URI's kind is configured"))
    }

    /// The target of one object the user named by its URI (a path, `file://…`, `s3://bucket/key`,
    /// `az://container/blob`), with more `[target]` keys in `extra`; and the object's name in it.
    /// The user named it, so it replaces whatever was there (as `cp` would); a file's directory
    /// must exist, as for open(2): a typo in a path is an error, not a tree.
    pub fn for_object(uri: &str, extra: &toml::Table) -> Result<(Target, String)> {
        let (target_uri, name) = split(uri)?;
        let mut table = extra.clone();
        table.insert("uri".into(), toml::Value::String(target_uri));
        let locate = |table: &str, key: &str| format!("{table}.{key}");
        let mut target = Target::configure(&table, &locate)?;
        match &mut target {
            Target::File(t) => {
                t.options.create_root = false;
                t.options.replace_any = true;
            }
            Target::S3(t) => t.options.cloud.replace_any = true,
            Target::Azure(t) => t.options.cloud.replace_any = true,
            Target::Null | Target::Dev(_) => {}
        }
        Ok((target, name))
    }

    /// The target as a URI (`file://…`, `s3://bucket/prefix`), for reports.
    pub fn uri(&self) -> String {
        let join = |scheme: &str, root: &str, prefix: &str| {
            if prefix.is_empty() {
                format!("{scheme}{root}")
            } else {
                format!("{scheme}{root}/{prefix}")
            }
        };
        match self {
            Target::File(t) => format!("file://{}", t.root.display()),
            Target::Null => "null://".into(),
            Target::S3(t) => join("s3://", &t.bucket, &t.prefix),
            Target::Azure(t) => join("az://", &t.container, &t.prefix),
            Target::Dev(t) => format!("dev://{}", t.path.display()),
        }
    }

    /// Opens the target; with what the sink had to say on opening (io_uring fell back to pwrite,
    /// stale temporaries removed).
    pub fn open(&self) -> Result<(Arc<dyn Sink>, Vec<String>)> {
        Ok(match self {
            Target::File(t) => {
                let sink: FileSink = t.open()?;
                let notes = sink.opening_notes().to_vec();
                (Arc::new(sink), notes)
            }
            Target::Null => (Arc::new(NullSink), Vec::new()),
            Target::S3(t) => (Arc::new(super::s3::open(t)?), Vec::new()),
            Target::Azure(t) => (Arc::new(super::azure::open(t)?), Vec::new()),
            Target::Dev(t) => {
                let sink = t.open()?;
                let notes = sink.opening_notes().to_vec();
                (Arc::new(sink), notes)
            }
        })
    }
}

/// The target URI and the object's name of `uri`.
pub fn split(uri: &str) -> Result<(String, String)> {
    let bad = |why: &str| Error::InvalidValue { key: "path", value: uri.to_string(), reason: why.to_string() };
    let (scheme, rest) = match uri.split_once("://") {
        Some((s, r)) if ["file", "s3", "az"].contains(&s) => (format!("{s}://"), r.to_string()),
        Some((s, _)) => return Err(bad(&format!("has the scheme '{s}://'; use a path, file://, s3:// or az://"))),
        None => ("file://".to_string(), uri.to_string()),
    };
    let rest = rest.trim_end_matches('/');
    let (parent, name) = match rest.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None if scheme == "file://" => (".", rest),
        None => return Err(bad("names a bucket or container but no object in it")),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(bad("does not end in an object name"));
    }
    let parent = if parent.is_empty() && scheme == "file://" { "/" } else { parent };
    Ok((format!("{scheme}{parent}"), name.to_string()))
}

/// A URI the backend refused, as a workload error at `target.uri`.
fn located_uri(e: Error, locate: Locate) -> Error {
    match e {
        Error::InvalidValue { key: "target.uri", value, reason } => {
            Error::Workload { at: locate("target", "uri"), message: format!("target.uri: '{value}' {reason}") }
        }
        other => other,
    }
}
