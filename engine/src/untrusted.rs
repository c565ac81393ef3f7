//! What the engine takes from users and from strangers, made safe before it is used: files read
//! only when they are regular files within a size cap (a FIFO would block, a device never end), and
//! text from plugins or storage escaped before it reaches a terminal.

use crate::size::format_size;
use std::path::Path;

/// Reads a file that must be a regular file of at most `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Opened before it is looked at, without blocking: a FIFO (or a device) named here is refused
    // instead of waiting for a writer, and what is checked is what is read.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("is not a regular file"));
    }
    let too_large = || std::io::Error::other(format!("is larger than the {} allowed", format_size(max)));
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Text that came from a plugin (or from storage) made safe for a terminal: control characters and
/// the Unicode controls that reorder text are escaped (`\x1b`, `\n`, `\u{202e}`), so it cannot
/// move the cursor, clear the screen or fake a line; cut after `max` characters with a note of
/// how much was left out.
pub fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 32));
    for (shown, (i, c)) in text.char_indices().enumerate() {
        if shown >= max {
            out.push_str(&format!("… ({} more bytes)", text.len() - i));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Clears `O_NONBLOCK` on a descriptor opened with it (so that opening a FIFO or a device could
/// not block): what follows reads and writes as usual.
pub fn set_blocking(fd: &impl std::os::fd::AsRawFd) {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor the caller holds open.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 && fl & libc::O_NONBLOCK != 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// A value as an error message echoes it: escaped, and at most 40 characters (`1e308` written out
/// is 309 digits; a pasted blob is worse) — but a path or a URI whole (up to a name's 1024 bytes),
/// since a cut one names nothing.
pub fn echo(value: &str) -> String {
    sanitize(value, if value.contains('/') { 1024 } else { 40 })
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn plugin_text_is_escaped_and_cut() {
        assert_eq!(sanitize("\x1b[2Jok\r\nPASS\t\u{7}", 100), "\\x1b[2Jok\\r\\nPASS\\t\\x07");
        assert_eq!(sanitize("a\u{202e}b\u{9b}c", 100), "a\\u{202e}b\\x9bc");
        assert_eq!(sanitize("héllo wörld", 5), "héllo… (7 more bytes)");
        assert_eq!(sanitize("plain text", 100), "plain text");
    }
}
