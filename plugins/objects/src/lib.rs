//! `objects`: N objects with sizes fixed, uniform or lognormal, each laid out as
//! `[header: magic "DGENOBJ1", payload length u64 LE, seed u64 LE][payload][CRC32C footer]`;
//! checks the count, the bytes and the throughput. `footer = false` leaves the CRC32C footer out: the
//! host computes a footer's CRC before the object starts (it regenerates the payload once), which a
//! plain-file shape, as fio writes, does not pay.
//!
//! `phases` runs any sequence of "put" (write them), "get" (read them back, whole or as random
//! ranges of `range_size`, checked by `get_check`), "stat", "list" and "delete", each a phase of its
//! own in the report. A "get" without a "put" before it in the run reads the objects an earlier run
//! with the same seed and params wrote: it describes them again and declares them, so the host knows
//! what they should hold.
//!
//! On several hosts (rank h of W, from MPI or `--rank`/`--world-size`), host h does objects i with
//! i mod W = h in every phase; the same workload file runs on one host or on many.

use dgen_plugin_sdk::{export_plugin, log, wait_all, wait_reads, Config, FieldKind, Plugin, ReadCheck, Report, Target};
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
    /// What to do, in order: "put", "get", "stat", "list", "delete".
    #[serde(default = "default_phases")]
    phases: Vec<String>,
    /// Get random ranges of this many bytes instead of whole objects (0: whole objects); each object
    /// gets about size / range_size of them, so a ranged get reads about as much.
    #[serde(default)]
    range_size: u64,
    /// "none", "crc" or "verify".
    #[serde(default = "default_check")]
    get_check: String,
    /// The payloads' own data profile, with the keys of a workload's `[data]` (dedup, compress,
    /// dedup_extent, compress_mix, dedup_copies); absent: the run's.
    #[serde(default)]
    payload_data: Option<serde_json::Value>,
}

fn default_phases() -> Vec<String> {
    vec!["put".into()]
}
fn default_check() -> String {
    "verify".into()
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
        let check = match p.get_check.as_str() {
            "none" => ReadCheck::None,
            "crc" => ReadCheck::Crc,
            "verify" => ReadCheck::Verify,
            other => return Err(format!("unknown get_check '{other}' (none, crc, verify)")),
        };
        for ph in &p.phases {
            if !["put", "get", "stat", "list", "delete"].contains(&ph.as_str()) {
                return Err(format!("unknown phase '{ph}' (put, get, stat, list, delete)"));
            }
        }
        // The sizes from the seed, again for each phase that needs them: no list of them is kept.
        let sizes = |rng: &mut Rng| -> Result<u64, String> { Ok(next_payload(rng)? + HEADER as u64 + footer) };
        let name = |i: u64| format!("{}-{i:06}.bin", p.prefix);
        let payload_profile = match &p.payload_data {
            Some(keys) => Some(dgen_plugin_sdk::profile(keys).map_err(|e| format!("params.payload_data: {e}"))?),
            None => None,
        };
        let describe = |i: u64, payload: u64| -> Result<Target, String> {
            let mut t = Target::open_sized(&name(i), HEADER as u64 + payload + footer)?;
            // The header is patched in last, as formats with a length or an index up front are: the
            // engine stores it in place (for S3, the first part is whole only once it is patched).
            let header_at = t.reserve(HEADER as u32)?;
            match &payload_profile {
                Some(profile) => t.fill_profile(payload, profile)?,
                None => t.fill(payload)?,
            }
            if p.footer {
                t.field(FieldKind::Crc32cLe)?;
            }
            let mut header = [0u8; HEADER];
            header[..8].copy_from_slice(b"DGENOBJ1");
            header[8..16].copy_from_slice(&(t.size() - HEADER as u64 - footer).to_le_bytes());
            header[16..24].copy_from_slice(&config.seed.to_le_bytes());
            t.patch(header_at, &header)?;
            Ok(t)
        };
        // On several hosts (rank h of W), host h does the objects i with i mod W = h; sizes still
        // come from the one sequence, so object i is the same whichever host writes it.
        let (host, hosts) = (config.rank as u64, config.world_size.max(1) as u64);
        let mine = |i: u64| i % hosts == host;
        let own = (0..p.count).filter(|&i| mine(i)).count() as u64;
        let mut report = Report::new();
        let mut summary = Vec::new();
        let mut described = false;
        let mut expected = 0u64;
        // Objects a stonewall cut short in `put` (removed): later phases leave them out.
        let mut cut_names = std::collections::HashSet::new();
        for (k, ph) in p.phases.iter().enumerate() {
            let mut rng = Rng(config.seed ^ 0x006F_626A_6563_7473);
            let tag = if p.phases.len() > 1 { format!("{ph} ") } else { String::new() };
            dgen_plugin_sdk::phase(ph);
            match ph.as_str() {
                "put" => {
                    if described {
                        return Err("a second 'put' would write the same names again".into());
                    }
                    let (mut sizing, mut total) = (Rng(rng.0), 0u64);
                    for i in 0..p.count {
                        let size = sizes(&mut sizing)?;
                        if mine(i) {
                            total = total.saturating_add(size);
                        }
                    }
                    // The total before the first object starts, for the user's progress line.
                    dgen_plugin_sdk::expect(total, own);
                    let cut_before = dgen_plugin_sdk::stonewalled();
                    let mut sized = std::collections::HashMap::new();
                    for i in 0..p.count {
                        let payload = next_payload(&mut rng)?;
                        if !mine(i) {
                            continue;
                        }
                        let t = describe(i, payload)?;
                        expected += t.size();
                        sized.insert(name(i), t.size());
                        t.commit()?;
                    }
                    described = true;
                    let done = wait_all()?;
                    let bytes: u64 = done.iter().map(|o| o.size).sum();
                    // On several hosts the throughput check is about all of them (each asks here).
                    let totals =
                        if hosts > 1 { dgen_plugin_sdk::world_totals(false) } else { dgen_plugin_sdk::totals() };
                    let gbps = totals.bytes as f64 / totals.seconds.max(1e-9) / 1e9;
                    log!("{} objects, {} bytes, {:.2} GB/s", done.len(), bytes, gbps);
                    // Stonewalled: the objects cut short are not written; the others are whole.
                    let cut = dgen_plugin_sdk::stonewalled() - cut_before;
                    if cut > 0 {
                        expected = done.iter().map(|o| sized.get(&o.name).copied().unwrap_or(0)).sum();
                        log!("{cut} objects cut short by the stonewall");
                        for o in &done {
                            sized.remove(&o.name);
                        }
                        cut_names.extend(sized.into_keys());
                    }
                    report = report
                        .check_eq("objects written", (done.len() as u64 + cut) as f64, own as f64)
                        .check_eq("bytes written", bytes as f64, expected as f64)
                        .check_ge(
                            if hosts > 1 { "throughput GB/s (all hosts)" } else { "throughput GB/s" },
                            gbps,
                            p.min_gbps,
                        );
                    summary.push(format!("{own} {} objects, {} bytes", p.distribution, bytes));
                }
                "get" => {
                    let cut_before = dgen_plugin_sdk::stonewalled();
                    let mut want = 0u64;
                    let mut ranges = Rng(config.seed ^ 0x7261_6e67_6573 ^ k as u64);
                    for i in 0..p.count {
                        let payload = next_payload(&mut rng)?;
                        let size = HEADER as u64 + payload + footer;
                        if !mine(i) || cut_names.contains(&name(i)) {
                            continue;
                        }
                        if !described && check != ReadCheck::None {
                            describe(i, payload)?.declare()?;
                        }
                        if p.range_size == 0 || p.range_size >= size {
                            dgen_plugin_sdk::read(&name(i), check)?;
                            want += size;
                        } else {
                            for _ in 0..(size / p.range_size).max(1) {
                                let at = ranges.next() % (size - p.range_size + 1);
                                dgen_plugin_sdk::read_range(&name(i), at, p.range_size, check)?;
                                want += p.range_size;
                            }
                        }
                    }
                    described |= check != ReadCheck::None;
                    let done = wait_reads()?;
                    let bytes: u64 = done.iter().map(|r| r.bytes).sum();
                    let passed = done.iter().filter(|r| r.passed).count() as u64;
                    // Stonewalled: reads cut short did not pass, nor fail; what they read counts.
                    let cut = dgen_plugin_sdk::stonewalled() - cut_before;
                    report = if cut == 0 {
                        report.check_eq(&format!("{tag}bytes read"), bytes as f64, want as f64)
                    } else {
                        report.check_le(&format!("{tag}bytes read (stonewalled)"), bytes as f64, want as f64)
                    };
                    report = report.check_eq(
                        &format!("{tag}reads passing {}", p.get_check),
                        (passed + cut) as f64,
                        done.len() as f64,
                    );
                    summary.push(format!("{} reads, {bytes} bytes", done.len()));
                }
                "stat" => {
                    let mut found = 0u64;
                    for i in 0..p.count {
                        let size = sizes(&mut rng)?;
                        if mine(i) && !cut_names.contains(&name(i)) && dgen_plugin_sdk::stat(&name(i))? == Some(size) {
                            found += 1;
                        }
                    }
                    let there = own - cut_names.len() as u64;
                    report =
                        report.check_eq(&format!("{tag}objects found with their size"), found as f64, there as f64);
                    summary.push(format!("{found} stat"));
                }
                "list" => {
                    let l = dgen_plugin_sdk::list(&format!("{}-", p.prefix))?;
                    let mut bytes = 0u64;
                    for _ in 0..p.count {
                        bytes += sizes(&mut rng)?;
                    }
                    // Alone, the listing is exactly what was written. On several hosts it holds every
                    // host's objects that are there when it runs (all of them, once every host's put
                    // is done: under MPI, phases start together).
                    report = if hosts == 1 {
                        report.check_eq(&format!("{tag}objects listed"), l.count as f64, p.count as f64).check_eq(
                            &format!("{tag}bytes listed"),
                            l.bytes as f64,
                            bytes as f64,
                        )
                    } else {
                        report.check_ge(
                            &format!("{tag}objects listed"),
                            l.count as f64,
                            (own - cut_names.len() as u64) as f64,
                        )
                    };
                    summary.push(format!("{} listed", l.count));
                }
                _ => {
                    let mut deleted = 0u64;
                    for i in (0..p.count).filter(|&i| mine(i) && !cut_names.contains(&name(i))) {
                        if dgen_plugin_sdk::delete(&name(i)).is_ok() {
                            deleted += 1;
                        }
                    }
                    let there = own - cut_names.len() as u64;
                    report = report.check_eq(&format!("{tag}objects deleted"), deleted as f64, there as f64);
                    summary.push(format!("{deleted} deleted"));
                }
            }
        }
        Ok(report.summary(summary.join("; ")))
    }
}

export_plugin!(
    Objects,
    name = "objects",
    version = "0.6.0",
    params = "count (16), distribution: fixed|uniform|lognormal (fixed), size bytes (1048576; mean for lognormal), min_size/max_size (uniform), sigma (0.5, lognormal), prefix (obj), footer: CRC32C at the end (true), min_gbps (0), phases: list of put|get|stat|list|delete (put), range_size bytes (0: whole objects), get_check: none|crc|verify (verify), payload_data: a [data]-like table for the payloads (the run's)",
    keys = {
        count: "integer",
        distribution: "fixed|uniform|lognormal",
        size: "integer",
        min_size: "integer",
        max_size: "integer",
        sigma: "number",
        prefix: "string",
        footer: "boolean",
        min_gbps: "number",
        phases: "list",
        range_size: "integer",
        get_check: "none|crc|verify",
        payload_data: "table",
    }
);
