//! How an object is cut into parts: a pure function of its size, the store's limits, the options and
//! the pool's buffer size, so each store's rules are tested without a store.

use super::CloudOptions;
use crate::size::format_size;

/// A store's upload rules.
#[derive(Clone, Copy, Debug)]
pub struct PartLimits {
    /// Every part but the last is at least this long.
    pub min_part: u64,
    pub max_part: u64,
    pub max_parts: u64,
    /// The largest object the store accepts.
    pub max_object: u64,
    /// The largest object sent in one request instead of parts.
    pub max_single: u64,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Layout {
    /// One request for the whole object.
    Single,
    /// Parts of `part` bytes (the last may be shorter).
    Multi { part: u64 },
}

/// How an object of `size` bytes is sent, given the store's limits, the options and the pool's
/// buffer size (`chunk`).
pub(super) fn plan_layout(
    l: &PartLimits,
    engine: &str,
    opts: &CloudOptions,
    chunk: u64,
    size: u64,
) -> std::result::Result<Layout, String> {
    if size > l.max_object {
        return Err(format!("{} is more than {engine} allows ({})", format_size(size), format_size(l.max_object)));
    }
    // Small objects go in one request (from one or a few buffers).
    let single = opts
        .multipart_threshold
        .unwrap_or_else(|| chunk.max(l.min_part).max(opts.part_size.unwrap_or(0)))
        .min(l.max_single);
    if size <= single {
        return Ok(Layout::Single);
    }
    // Whole buffers per part: enough for the store's minimum, the requested size and its part count.
    let mut k = l.min_part.div_ceil(chunk).max(size.div_ceil(chunk * l.max_parts)).max(1);
    if let Some(p) = opts.part_size {
        k = k.max(p.div_ceil(chunk));
    }
    let part = k * chunk;
    if part > l.max_part {
        return Err(format!(
            "{} in at most {} parts needs parts of {}, more than the {} allowed",
            format_size(size),
            l.max_parts,
            format_size(part),
            format_size(l.max_part)
        ));
    }
    Ok(Layout::Multi { part })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(l: &PartLimits, opts: &CloudOptions, chunk: u64, size: u64) -> Option<u64> {
        match plan_layout(l, "store", opts, chunk, size).unwrap() {
            Layout::Single => None,
            Layout::Multi { part } => Some(part),
        }
    }

    #[test]
    fn parts_stay_within_each_stores_limits() {
        const MIB: u64 = 1 << 20;
        let (az, s3, d) = (crate::sink::azure::LIMITS, crate::sink::s3::LIMITS, CloudOptions::default());
        // Azure: a block per buffer, until 50,000 of them would not hold the blob.
        assert_eq!(part(&az, &d, 8 * MIB, 8 * MIB), None);
        assert_eq!(part(&az, &d, 8 * MIB, 8 * MIB + 1), Some(8 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 50_000 * 8 * MIB), Some(8 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 50_000 * 8 * MIB + 1), Some(16 * MIB));
        assert_eq!(part(&az, &d, 8 * MIB, 1 << 40), Some(24 * MIB));
        // S3: at least 5 MiB a part, whatever the buffer.
        assert_eq!(part(&s3, &d, MIB, 5 * MIB + 1), Some(5 * MIB));
        assert_eq!(part(&s3, &d, 8 * MIB, 10_000 * 8 * MIB + 1), Some(16 * MIB));
        // An explicit part size and threshold.
        let o = CloudOptions { part_size: Some(96 * MIB), multipart_threshold: Some(MIB), ..CloudOptions::default() };
        assert_eq!(part(&az, &o, 8 * MIB, 2 * MIB), Some(96 * MIB));
        // Beyond what the store can hold: a message, not a panic.
        let e = plan_layout(&az, "azure", &d, 8 * MIB, az.max_object + 1).unwrap_err();
        assert!(e.contains("more than azure allows"), "{e}");
        let e = plan_layout(&s3, "s3", &d, 8 * MIB, s3.max_object).unwrap();
        assert!(matches!(e, Layout::Multi { part } if part <= s3.max_part));
    }
}
