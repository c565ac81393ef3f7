//! `objects`: N objects with sizes fixed, uniform or lognormal, each laid out as
//! `[header: magic "DGENOBJ1", payload length u64 LE, seed u64 LE][payload][CRC32C footer]`;
//! checks the count, the bytes and the throughput. `footer = false` leaves the CRC32C footer out: the
//! host computes a footer's CRC before the object starts (it regenerates the payload once), which a
//! plain-file shape, as fio writes, does not pay.

use dgen_plugin_sdk::{export_plugin, log, wait_all, Config, FieldKind, Plugin, Report, Target};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Number of objects.
    #[serde(default = "default_count")]
    count: u64,
    /// "fixed", "uniform" or "lognormal".
    #[serde(default = "default_dist")]
    distribution: String,
    /// Payload size for fixed, mean for lognormal, (min + max) / 2 for uniform; bytes.
    #[serde(default = "default_size")]
    size: u64,
    /// Uniform: smallest payload; lognormal: sigma (as a ratio, e.g. 0.5).
    #[serde(default)]
    min_size: u64,
    #[serde(default)]
    max_size: u64,
    #[serde(default = "default_sigma")]
    sigma: f64,
    /// Object name prefix.
    #[serde(default = "default_prefix")]
    prefix: String,
    /// End each object with the CRC32C of everything before it.
    #[serde(default = "default_footer")]
    footer: bool,
    /// Pass only at or above this throughput (GB/s).
    #[serde(default)]
    min_gbps: f64,
}

fn default_count() -> u64 {
    16
}
fn default_dist() -> String {
    "fixed".into()
}
fn default_size() -> u64 {
    1 << 20
}
fn default_footer() -> bool {
    true
}
fn default_sigma() -> f64 {
    0.5
}
fn default_prefix() -> String {
    "obj".into()
}

/// splitmix64: a small deterministic PRNG so sizes follow the seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

const HEADER: usize = 24;
const FOOTER: u64 = 4;

struct Objects;

impl Plugin for Objects {
    fn run(config: &Config) -> Result<Report, String> {
        let p: Params = config.params()?;
        let mut rng = Rng(config.seed ^ 0x006F_626A_6563_7473);
        let next_payload = |rng: &mut Rng| -> Result<u64, String> {
            Ok(match p.distribution.as_str() {
                "fixed" => p.size,
                "uniform" => {
                    let (lo, hi) = (p.min_size, p.max_size.max(p.min_size));
                    lo + rng.next() % (hi - lo + 1)
                }
                "lognormal" => {
                    // Mean `size`: mu = ln(size) - sigma^2 / 2.
                    let mu = (p.size.max(1) as f64).ln() - p.sigma * p.sigma / 2.0;
                    (mu + p.sigma * rng.normal()).exp().round() as u64
                }
                other => return Err(format!("unknown distribution '{other}' (fixed, uniform, lognormal)")),
            })
        };
        let footer = if p.footer { FOOTER } else { 0 };
        // The sizes twice from the same seed: once to tell the host the total before the first object
        // starts (for the user's progress line), once to write them, keeping no list of them.
        let (mut sizing, mut total) = (Rng(rng.0), 0u64);
        for _ in 0..p.count {
            total = total.saturating_add(next_payload(&mut sizing)? + HEADER as u64 + footer);
        }
        dgen_plugin_sdk::expect(total, p.count);
        let mut expected = 0u64;
        for i in 0..p.count {
            let payload = next_payload(&mut rng)?;
            let name = format!("{}-{i:06}.bin", p.prefix);
            let mut t = Target::open_sized(&name, HEADER as u64 + payload + footer)?;
            // The header is patched in last, as formats with a length or an index up front are: the
            // engine stores it in place (for S3, the first part is whole only once it is patched).
            let header_at = t.reserve(HEADER as u32)?;
            t.fill(payload)?;
            if p.footer {
                t.field(FieldKind::Crc32cLe)?;
            }
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(b"DGENOBJ1");
            header[8..16].copy_from_slice(&(t.size() - HEADER as u64 - footer).to_le_bytes());
            header[16..24].copy_from_slice(&config.seed.to_le_bytes());
            t.patch(header_at, &header)?;
            expected += t.size();
            t.commit()?;
        }
        let done = wait_all()?;
        let bytes: u64 = done.iter().map(|o| o.size).sum();
        let totals = dgen_plugin_sdk::totals();
        let gbps = totals.bytes as f64 / totals.seconds.max(1e-9) / 1e9;
        log!("{} objects, {} bytes, {:.2} GB/s", done.len(), bytes, gbps);
        Ok(Report::new()
            .check_eq("objects written", done.len() as f64, p.count as f64)
            .check_eq("bytes written", bytes as f64, expected as f64)
            .check_ge("throughput GB/s", gbps, p.min_gbps)
            .summary(format!("{} {} objects, {} bytes", p.count, p.distribution, bytes)))
    }
}

export_plugin!(
    Objects,
    name = "objects",
    version = "0.2.0",
    params = "count (16), distribution: fixed|uniform|lognormal (fixed), size bytes (1048576; mean for lognormal), min_size/max_size (uniform), sigma (0.5, lognormal), prefix (obj), footer: CRC32C at the end (true), min_gbps (0)"
);
