//! One generated object written to any target by its URI — a path, `file://…`, `s3://bucket/key`,
//! `az://container/blob` — and optionally read back and compared: what the Python package's
//! `write_file` is (dgen-py's proposed Rust-native write path), kept in the library so that the
//! write, its abort on failure or Ctrl-C, and its read-back are the engine's own and not a copy.
//!
//! The object's parent is the target (`[target] uri`, with the caller's other `[target]` keys:
//! an S3 endpoint, `direct`, `engine`), the last path segment its name; the bytes are stream 0 of
//! the generator, as `dgen-engine gen` writes them.

use crate::error::{Error, Result};
use crate::generator::Generator;
use crate::object::Content;
use crate::pipeline::executor::Observer;
use crate::pipeline::verify::{self, Verdict};
use crate::run::generate::{GenResult, GenSpec, Output};
use crate::sink::target::Target;
use std::sync::atomic::AtomicBool;

/// What to write, and how.
#[derive(Clone, Debug)]
pub struct WriteSpec {
    /// Where: a path (relative or absolute), or a `file://`, `s3://`, `az://` URI of the object.
    pub uri: String,
    pub size: u64,
    /// Bytes per write, and buffers in the pool (memory for data is their product).
    pub buffer_size: usize,
    pub buffers: usize,
    pub threads: usize,
    /// Read the object back when written and compare every byte.
    pub verify: bool,
    /// More `[target]` keys, as a workload would give them (`direct`, `engine`, `endpoint`, …);
    /// each is checked by the backend that owns it.
    pub target: toml::Table,
}

/// What [`write`] did.
pub struct Written {
    pub result: GenResult,
    /// The object, as a URI.
    pub object: String,
    /// How the sink wrote it (`io_uring, O_DIRECT`, `s3 multipart` …).
    pub engine: String,
    /// What the sink said on opening (io_uring unavailable, stale temporaries removed).
    pub notes: Vec<String>,
    /// The read-back, when asked for.
    pub verdict: Option<Verdict>,
}

/// Writes `spec.size` bytes of stream 0 of `gen` as the object `spec.uri`. On failure or
/// cancellation the object is aborted: no complete-looking file, no open upload.
pub fn write(gen: &Generator, spec: &WriteSpec, observer: &mut dyn Observer, cancel: &AtomicBool) -> Result<Written> {
    let (target, name) = Target::for_object(&spec.uri, &spec.target)?;
    crate::pool::pool_fits(spec.buffers as u64, spec.buffer_size as u64).map_err(|m| Error::InvalidValue {
        key: "buffer_count",
        value: spec.buffers.to_string(),
        reason: m,
    })?;
    let (sink, notes) = target.open()?;
    let caps = sink.capabilities();
    let direct = matches!(&target, Target::File(t) if t.options.direct);
    let engine = format!("{}{}", caps.engine, if direct { ", O_DIRECT" } else { "" });
    let object = format!("{}/{name}", target.uri().trim_end_matches('/'));
    let gen_spec = GenSpec {
        size: spec.size,
        buffer_size: spec.buffer_size,
        buffers: spec.buffers,
        threads: spec.threads,
        zstd_level: None,
    };
    let result = crate::run::generate::generate(
        gen,
        &gen_spec,
        Output::Object { sink: &*sink, name: name.clone() },
        observer,
        cancel,
    )?;
    let verdict = if spec.verify {
        let pool = verify::comparison_pool(&caps, spec.buffer_size)?;
        let content = Content::Stream { stream: 0, offset: 0 };
        Some(verify::compare_object(sink.open(&name)?, gen, &content, spec.size, &pool, cancel)?)
    } else {
        None
    };
    Ok(Written { result, object, engine, notes, verdict })
}

#[cfg(test)]
mod tests {
    use crate::sink::target::split;

    #[test]
    fn an_object_uri_is_its_target_and_its_name() {
        let s = |u: &str| split(u).map_err(|e| e.to_string());
        assert_eq!(s("data.bin").unwrap(), ("file://.".into(), "data.bin".into()));
        assert_eq!(s("/mnt/x/data.bin").unwrap(), ("file:///mnt/x".into(), "data.bin".into()));
        assert_eq!(s("/data.bin").unwrap(), ("file:///".into(), "data.bin".into()));
        assert_eq!(s("file:///mnt/x/d").unwrap(), ("file:///mnt/x".into(), "d".into()));
        assert_eq!(s("s3://bucket/a/b.bin").unwrap(), ("s3://bucket/a".into(), "b.bin".into()));
        assert_eq!(s("az://c/b").unwrap(), ("az://c".into(), "b".into()));
        assert!(s("s3://bucket").unwrap_err().contains("no object"));
        assert!(s("http://x/y").unwrap_err().contains("'http://'"));
        assert!(s("/mnt/x/..").unwrap_err().contains("object name"));
    }
}
