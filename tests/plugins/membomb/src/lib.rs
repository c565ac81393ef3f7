//! A hostile test plugin. It starts an object, then allocates until the memory cap stops it.

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

struct Hostile;

impl Plugin for Hostile {
    #[allow(unreachable_code, unused_variables, unused_mut)]
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("half.bin")?;
        t.fill(1 << 20)?;
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

export_plugin!(Hostile, name = "hostile-membomb", version = "0.1.0", params = "none");
