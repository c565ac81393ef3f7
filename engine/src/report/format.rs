//! How figures are written in the table: milliseconds, shares of a window, GB/s.

use std::time::Duration;

/// µs as milliseconds, to two decimals below 10 ms.
pub(crate) fn ms(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// µs as milliseconds, always to two decimals (the merged tables' columns).
pub(crate) fn ms2(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

pub(crate) fn pct(part: f64, whole: f64) -> f64 {
    100.0 * part / whole.max(1e-9)
}

/// GB/s (decimal, as storage people quote it).
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    gbps_of(bytes, d.as_secs_f64())
}

/// GB/s of `bytes` over `seconds`.
pub fn gbps_of(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / seconds.max(1e-9) / 1e9
}
