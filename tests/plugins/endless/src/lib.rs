//! A hostile test plugin. It starts an object, then loops forever: fuel must stop it.

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

struct Hostile;

impl Plugin for Hostile {
    #[allow(unreachable_code, unused_variables, unused_mut)]
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("half.bin")?;
        t.fill(1 << 20)?;
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

export_plugin!(Hostile, name = "hostile-endless", version = "0.1.0", params = "none");
