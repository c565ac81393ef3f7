//! A hostile test plugin. It claims a contract this host does not speak (dgen:plugin@2.0.0).

use dgen_plugin_sdk::bindings::dgen::plugin::types::{Report, RunConfig};

const META: &str =
    "{\"name\":\"hostile-badcontract\",\"version\":\"0.1.0\",\"sdk\":\"9.0.0\",\"contract\":\"dgen:plugin@2.0.0\",\"params\":\"\"}";

#[used]
#[unsafe(link_section = "dgen-plugin")]
static META_SECTION: [u8; META.len()] = dgen_plugin_sdk::__meta::<{ META.len() }>(META);

struct Hostile;

impl dgen_plugin_sdk::bindings::Guest for Hostile {
    fn run(_config: RunConfig) -> Result<Report, String> {
        Err("this must never run".into())
    }
}

dgen_plugin_sdk::bindings::export!(Hostile with_types_in dgen_plugin_sdk::bindings);
