//! A hostile test plugin. It imports a WASI function (to print), which plugins are not given.

use dgen_plugin_sdk::{export_plugin, Config, Plugin, Report, Target};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: i32, iovs: i32, len: i32, written: i32) -> i32;
}

struct Hostile;

impl Plugin for Hostile {
    fn run(_config: &Config) -> Result<Report, String> {
        let mut t = Target::open("half.bin")?;
        t.fill(4096)?;
        // SAFETY: never actually reached: the host refuses the import before running anything.
        let rc = unsafe { fd_write(1, 0, 0, 0) };
        Err(format!("fd_write returned {rc}"))
    }
}

export_plugin!(Hostile, name = "hostile-wasi", version = "0.1.0", params = "none");
