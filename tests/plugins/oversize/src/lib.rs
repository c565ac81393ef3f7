//! A hostile test plugin. It hands the host one write larger than the per-call limit (bypassing the SDK, which splits).

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

struct Hostile;

impl Plugin for Hostile {
    #[allow(unreachable_code, unused_variables, unused_mut)]
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("half.bin")?;
        t.fill(4096)?;
        let raw = dgen_plugin_sdk::bindings::dgen::plugin::host::open("big.bin", None)?;
        raw.write(&vec![7u8; 2 << 20])?;
        raw.commit()?;
        Ok(Report::new())
    }
}

export_plugin!(Hostile, name = "hostile-oversize", version = "0.1.0", params = "none");
