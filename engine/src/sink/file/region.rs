//! A file opened for operations in place: read and written at random offsets by the operations
//! engine, not replaced whole. It is made (or extended) only when the job says so, and an existing
//! file is used only if the engine wrote it (it carries an identity); anything else under the name
//! is refused as in the way, so a plugin cannot overwrite a file it did not make.

use super::beneath::{self, open_in_place};
use super::FileSink;
use crate::error::{Error, Result};
use crate::object::identity::Identity;
use crate::sink::{check_name, OpenRegion, RegionRequest, Sink};
use std::io;

pub(super) fn open(sink: &FileSink, name: &str, req: &RegionRequest) -> Result<OpenRegion> {
    check_name(name, &sink.capabilities())?;
    let path = sink.root.join(name);
    let shown = format!("file:{}", path.display());
    let direct = req.direct.unwrap_or(sink.direct);
    let align = match (direct, sink.direct) {
        (false, _) => 1,
        (true, true) => sink.align as u64,
        (true, false) => super::probe::direct_alignment(&sink.root)? as u64,
    };
    let (dir, last) = sink.dirs.parent(name, req.create).map_err(|e| Error::io(&path, e))?;
    let flags = if direct { libc::O_DIRECT } else { 0 };
    let (file, made) = open_in_place(&dir, last, flags, req.create).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Error::NotFound { target: shown.clone(), message: "no such object".into(), source: None }
        }
        _ => Error::io(&path, e),
    })?;
    let identity = beneath::identity(&file);
    if !made && sink.identity && identity.is_none() {
        return Err(Error::Denied {
            target: shown,
            message: "a file the engine did not write is in the way (it carries no identity); it is left as it is"
                .into(),
            source: None,
        });
    }
    let mut len = if made { 0 } else { file.metadata().map_err(|e| Error::io(&path, e))?.len() };
    if req.end > len && req.create {
        file.set_len(req.end).map_err(|e| Error::io(&path, e))?;
        len = req.end;
    }
    if made {
        // Until its first whole write it is the engine's, but holds nothing known.
        stamp_file(sink, &file, &shown, &Identity::incomplete())?;
    }
    Ok(OpenRegion { file, path: shown, len, identity, direct, align })
}

pub(super) fn stamp(sink: &FileSink, region: &OpenRegion, identity: &Identity) -> Result<()> {
    stamp_file(sink, &region.file, &region.path, identity)
}

fn stamp_file(sink: &FileSink, file: &std::fs::File, path: &str, identity: &Identity) -> Result<()> {
    if !sink.identity {
        return Ok(());
    }
    beneath::set_identity(file, identity).map(drop).map_err(|e| Error::io(path, e))
}
