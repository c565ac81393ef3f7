//! Keys of a workload table, read one at a time by whoever owns them.
//!
//! A sink owns its configuration: the workload parser does not know what `part_size` or
//! `queue_depth` mean, it hands the `[target]` tables to the sink layer, and each backend takes the
//! keys it declares from a [`Keys`], checking type and range. Every error names the key as the user
//! wrote it (`target.s3.part_size`) at its file and line; whatever no one took is an unknown key.

use crate::error::{Error, Result};
use crate::size::{format_size, parse_size};
use std::ops::RangeInclusive;

/// Where a key is written, for messages: `file:line` when the line is known, else the file (or
/// `--set …` for an override).
pub type Locate<'a> = &'a dyn Fn(&str, &str) -> String;

struct Entry {
    /// The table the key was written in (`target`, `target.s3`).
    table: String,
    key: String,
    value: toml::Value,
    taken: bool,
}

/// Keys gathered from one or more tables, taken by name.
pub struct Keys<'a> {
    entries: Vec<Entry>,
    locate: Locate<'a>,
}

impl<'a> Keys<'a> {
    pub fn new(locate: Locate<'a>) -> Keys<'a> {
        Keys { entries: Vec::new(), locate }
    }

    /// Adds one key of `table`; a key given twice (in two tables) is an error.
    pub fn add(&mut self, table: &str, key: &str, value: toml::Value) -> Result<()> {
        if let Some(first) = self.entries.iter().find(|e| e.key == key) {
            let why = format!("is also given as {}.{key}; give it once", first.table);
            return Err(self.error_in(table, key, why));
        }
        self.entries.push(Entry { table: table.into(), key: key.into(), value, taken: false });
        Ok(())
    }

    /// Adds every key of `table`.
    pub fn add_table(&mut self, table: &str, values: &toml::Table) -> Result<()> {
        for (k, v) in values {
            self.add(table, k, v.clone())?;
        }
        Ok(())
    }

    fn take(&mut self, key: &str) -> Option<toml::Value> {
        let e = self.entries.iter_mut().find(|e| e.key == key)?;
        e.taken = true;
        Some(e.value.clone())
    }

    fn error_in(&self, table: &str, key: &str, why: impl std::fmt::Display) -> Error {
        let at = (self.locate)(table, key);
        Error::Workload { at, message: format!("{table}.{key}: {why}") }
    }

    /// An error about `key`, at the place it was written.
    pub fn invalid(&self, key: &str, why: impl std::fmt::Display) -> Error {
        let table = self.entries.iter().find(|e| e.key == key).map_or("target", |e| e.table.as_str());
        self.error_in(table, key, why)
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &toml::Value) -> Error {
        self.invalid(key, format!("expected {expected}, found {}", found.type_str()))
    }

    pub fn string(&mut self, key: &str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(key, "a string", &v)),
        }
    }

    pub fn flag(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong_type(key, "true or false", &v)),
        }
    }

    /// An integer within `range` (documented in the README).
    pub fn integer(&mut self, key: &str, range: RangeInclusive<i64>) -> Result<Option<i64>> {
        match self.take(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if range.contains(&n) => Ok(Some(n)),
            Some(toml::Value::Integer(n)) => {
                Err(self
                    .invalid(key, format!("{n} is out of range: must be from {} to {}", range.start(), range.end())))
            }
            Some(v) => Err(self.wrong_type(key, "an integer", &v)),
        }
    }

    /// A size: a number of bytes or a string with a unit (`"16MiB"`), within `range`.
    pub fn size(&mut self, key: &str, range: RangeInclusive<u64>) -> Result<Option<u64>> {
        let n = match self.take(key) {
            None => return Ok(None),
            Some(toml::Value::Integer(n)) if n >= 0 => n as u64,
            Some(toml::Value::String(s)) => parse_size(&s).map_err(|m| self.invalid(key, m))?,
            Some(v) => return Err(self.wrong_type(key, "a size (bytes, or a string such as \"16MiB\")", &v)),
        };
        if !range.contains(&n) {
            let why = format!("must be from {} to {}", format_size(*range.start()), format_size(*range.end()));
            return Err(self.invalid(key, why));
        }
        Ok(Some(n))
    }

    /// A value parsed from its text (a string, or an integer or a boolean read as text: `16`, `true` or
    /// `"auto"`).
    pub fn parsed<T: std::str::FromStr<Err = String>>(&mut self, key: &str) -> Result<Option<T>> {
        let text = match self.take(key) {
            None => return Ok(None),
            Some(toml::Value::String(s)) => s,
            Some(toml::Value::Integer(n)) => n.to_string(),
            // For the keys whose choices include on and off (`uncached = true` or `"auto"`).
            Some(toml::Value::Boolean(b)) => b.to_string(),
            Some(v) => return Err(self.wrong_type(key, "a string", &v)),
        };
        text.parse().map(Some).map_err(|m: String| self.invalid(key, m))
    }

    /// Every key was taken: anything left is unknown to its owner, which `known` lists.
    pub fn finish(self, known: &[&str]) -> Result<()> {
        match self.entries.iter().find(|e| !e.taken) {
            None => Ok(()),
            Some(e) => {
                let why = format!("unknown key; [{}] takes {}", e.table, known.join(", "));
                Err(self.error_in(&e.table, &e.key, why))
            }
        }
    }
}
