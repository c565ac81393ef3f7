//! The calls whose arguments are plugin-sized, linked over the plugin's memory: the size of a byte
//! list or a string is checked where it lies, before the host copies a byte, and only then is the
//! generated call (in `calls.rs` and `draft.rs`) made with the copy.

use super::logs::{MAX_LOG_LINE, MAX_METRIC_NAME};
use super::stretches::PHASE_NAME_MAX;
use super::{Draft, HostState};
use crate::plugin::dgen::plugin::host::{Host, HostTarget};
use crate::plugin::dgen::plugin::types::{self as wit, LogLevel};
use wasmtime::component::{Linker, Resource, WasmList, WasmStr};
use wasmtime::StoreContextMut;

/// The calls whose arguments are plugin-sized (`write`, `patch`, `open`, `log`, `metric`, `verify`,
/// `report-panic`) are defined here over the plugin's memory, replacing the generated ones: the size
/// is checked before the host copies a byte.
/// The longest job description a plugin may hand over, bytes.
pub const MAX_JOB_SPEC: usize = 64 << 10;

pub(crate) fn add_guarded_calls(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut host = linker.instance("dgen:plugin/host@1.2.0")?;
    type Cx<'a> = StoreContextMut<'a, HostState>;
    host.func_wrap("[method]target.write", |mut store: Cx<'_>, (t, bytes): (Resource<Draft>, WasmList<u8>)| {
        let max = store.data().limits.max_write;
        if bytes.len() > max {
            let m = format!("write of {} bytes exceeds the {max} bytes allowed per call", bytes.len());
            return Err(store.data_mut().violate(m));
        }
        let data = bytes.as_le_slice(&store).to_vec();
        Ok((HostTarget::write(store.data_mut(), t, data)?,))
    })?;
    host.func_wrap(
        "[method]target.patch",
        |mut store: Cx<'_>, (t, region, bytes): (Resource<Draft>, u32, WasmList<u8>)| {
            let max = store.data().limits.max_write;
            if bytes.len() > max {
                let m = format!("patch of {} bytes exceeds the {max} bytes allowed per call", bytes.len());
                return Err(store.data_mut().violate(m));
            }
            let data = bytes.as_le_slice(&store).to_vec();
            Ok((HostTarget::patch(store.data_mut(), t, region, data)?,))
        },
    )?;
    host.func_wrap("open", |mut store: Cx<'_>, (name, hint): (WasmStr, Option<u64>)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "target name")?;
        Ok((Host::open(store.data_mut(), name, hint)?,))
    })?;
    host.func_wrap("log", |mut store: Cx<'_>, (level, message): (LogLevel, WasmStr)| {
        // Long lines are cut, not refused: read only what will be shown.
        let text = {
            let s = message.to_str(&store)?;
            let s: &str = &s;
            let cut = s.len() > 4 * MAX_LOG_LINE;
            let end = if cut { floor_char(s, 4 * MAX_LOG_LINE) } else { s.len() };
            (s[..end].to_string(), cut)
        };
        // What was left unread is counted as a cut line, if the line is shown.
        store.data_mut().logs.unread_tail = text.1;
        Host::log(store.data_mut(), level, text.0)
    })?;
    host.func_wrap("metric", |mut store: Cx<'_>, (name, value): (WasmStr, f64)| {
        let name = guest_str(&mut store, &name, MAX_METRIC_NAME, "metric name")?;
        Host::metric(store.data_mut(), name, value)?;
        Ok(())
    })?;
    host.func_wrap("job", |mut store: Cx<'_>, (spec,): (WasmStr,)| {
        let spec = guest_str(&mut store, &spec, MAX_JOB_SPEC, "job spec")?;
        Ok((Host::job(store.data_mut(), spec)?,))
    })?;
    host.func_wrap("verify", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "target name")?;
        Ok((Host::verify(store.data_mut(), name)?,))
    })?;
    host.func_wrap(
        "read",
        |mut store: Cx<'_>, (name, offset, len, check): (WasmStr, u64, Option<u64>, wit::ReadCheck)| {
            let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
            Ok((Host::read(store.data_mut(), name, offset, len, check)?,))
        },
    )?;
    host.func_wrap("stat", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
        Ok((Host::stat(store.data_mut(), name)?,))
    })?;
    host.func_wrap("list", |mut store: Cx<'_>, (prefix,): (WasmStr,)| {
        let prefix = guest_str(&mut store, &prefix, crate::sink::MAX_NAME, "list prefix")?;
        Ok((Host::list(store.data_mut(), prefix)?,))
    })?;
    host.func_wrap("delete", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, crate::sink::MAX_NAME, "object name")?;
        Ok((Host::delete(store.data_mut(), name)?,))
    })?;
    host.func_wrap("phase", |mut store: Cx<'_>, (name,): (WasmStr,)| {
        let name = guest_str(&mut store, &name, PHASE_NAME_MAX, "phase name")?;
        Host::phase(store.data_mut(), name)
    })?;
    host.func_wrap("report-panic", |mut store: Cx<'_>, (message,): (WasmStr,)| {
        let text = {
            let s = message.to_str(&store)?;
            let s: &str = &s;
            s[..floor_char(s, 4 * MAX_LOG_LINE)].to_string()
        };
        Host::report_panic(store.data_mut(), text)
    })?;
    Ok(())
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A string argument of at most `max` bytes, copied out of the plugin's memory; longer ones trap.
fn guest_str(
    store: &mut StoreContextMut<'_, HostState>,
    s: &WasmStr,
    max: usize,
    what: &str,
) -> wasmtime::Result<String> {
    let (len, text) = {
        let t = s.to_str(&*store)?;
        (t.len(), if t.len() <= max { Some(t.into_owned()) } else { None })
    };
    match text {
        Some(t) => Ok(t),
        None => {
            let m = format!("{what} of {len} bytes is longer than the {max} bytes allowed");
            Err(store.data_mut().violate(m))
        }
    }
}
