//! A hostile test plugin. It starts an object, then traps (an abort).

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

struct Hostile;

impl Plugin for Hostile {
    #[allow(unreachable_code, unused_variables, unused_mut)]
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("half.bin")?;
        t.fill(1 << 20)?;
        core::arch::wasm32::unreachable()
    }
}

export_plugin!(Hostile, name = "hostile-trap", version = "0.1.0", params = "none");
