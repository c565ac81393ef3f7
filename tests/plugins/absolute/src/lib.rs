//! A hostile test plugin. It tries to write to an absolute path.

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

struct Hostile;

impl Plugin for Hostile {
    #[allow(unreachable_code, unused_variables, unused_mut)]
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("ok.bin")?;
        t.fill(4096)?;
        let mut evil = Target::open("/tmp/dgen-hostile-absolute.bin")?;
        evil.fill(4096)?;
        evil.commit()?;
        Ok(Report::new())
    }
}

export_plugin!(Hostile, name = "hostile-absolute", version = "0.1.0", params = "none");
