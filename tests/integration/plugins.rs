//! Workloads run through real plugins built from `plugins/` and `tests/plugins/` by the SDK: the
//! checkpoint is real safetensors with the generator's bytes, checks pass and fail as they should,
//! hostile plugins are stopped with exit 4 and leave nothing, bad workload files give exit 2.

use crate::common::*;
use dgen_engine::Generator;
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `run`/`verify` of a small checkpoint (tiny model, 3 ranks, 2 steps, seed 99) into `dir/out`.
fn ckpt_args(cmd: &str, dir: &Path, seed: &str) -> Vec<String> {
    let wl = root().join("workloads/ckpt.toml");
    let mut args = vec![cmd.to_string(), wl.display().to_string()];
    for set in [
        format!("target.uri=\"file://{}\"", dir.join("out").display()),
        "params.model=\"tiny\"".into(),
        "params.ranks=3".into(),
        "params.steps=2".into(),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    args.extend(["--seed".to_string(), seed.to_string()]);
    args
}

fn run_strings(args: &[String]) -> Output {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A small checkpoint into a fresh directory; returns (dir, output).
fn ckpt(name: &str, extra: &[&str]) -> (PathBuf, Output) {
    let dir = tempdir(name);
    let mut args = ckpt_args("run", &dir, "99");
    args.push("-q".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = run_strings(&args);
    (dir, o)
}

#[test]
fn ckpt_writes_real_safetensors_with_the_generators_bytes() {
    let (dir, o) = ckpt("ckpt-e2e", &["--json-report", "/dev/stdout"]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report");
    assert_eq!(report["plugin"]["name"], "ckpt");
    assert_eq!(report["exit_code"], 0);
    assert!(report["checks"].as_array().unwrap().iter().all(|c| c["passed"] == true), "{report}");
    assert_eq!(report["plugin"]["sha256"].as_str().unwrap().len(), 64);
    let out = dir.join("out");
    for step in ["step-000000", "step-000001"] {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(step).join("model.safetensors.index.json")).unwrap())
                .unwrap();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(step).join("manifest.json")).unwrap()).unwrap();
        // run-config's rank and world size (contract 1.1) reach the plugin: one host alone.
        assert_eq!((manifest["host_rank"].as_u64(), manifest["world_size"].as_u64()), (Some(0), Some(1)), "{manifest}");
        let mut tensor_bytes = 0u64;
        for rank in 1..=3 {
            let name = format!("model-{rank:05}-of-00003.safetensors");
            let bytes = std::fs::read(out.join(step).join(&name)).unwrap();
            // The header: 8-byte length, JSON; the offsets cover the data exactly.
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(n % 8, 0, "{name}: header not padded to 8 bytes");
            let header: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors JSON header");
            let mut spans: Vec<(u64, u64)> = header
                .iter()
                .filter(|(k, _)| *k != "__metadata__")
                .map(|(k, v)| {
                    assert_eq!(v["dtype"], "BF16");
                    assert_eq!(index["weight_map"][k], name.as_str(), "{k} not indexed to {name}");
                    let shape: u64 = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product();
                    let off = v["data_offsets"].as_array().unwrap();
                    let span = (off[0].as_u64().unwrap(), off[1].as_u64().unwrap());
                    assert_eq!(span.1 - span.0, shape * 2, "{k}: offsets disagree with the shape");
                    span
                })
                .collect();
            spans.sort();
            assert_eq!(spans[0].0, 0);
            for w in spans.windows(2) {
                assert_eq!(w[0].1, w[1].0, "{name}: gap or overlap between tensors");
            }
            assert_eq!(
                8 + n as u64 + spans.last().unwrap().1,
                bytes.len() as u64,
                "{name}: offsets do not cover the file"
            );
            tensor_bytes += spans.last().unwrap().1;
            // The manifest's CRC32C is the file's.
            let entry = manifest["shards"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == format!("{step}/{name}"))
                .expect("shard in manifest");
            assert_eq!(entry["crc32c"], format!("{:08x}", crc32c::crc32c(&bytes)));
            assert_eq!(entry["size"], bytes.len() as u64);
            // The first shard's tensors are the run's first fills, one after the other: consecutive
            // fills on one object are one run of stream 0, here from offset 0. Their bytes must be
            // the generator's.
            if step == "step-000000" && rank == 1 {
                let gen = Generator::new(99, profile(1.0, 1.5, 4096));
                for (a, b) in &spans {
                    let mut want = vec![0u8; (b - a) as usize];
                    gen.fill(0, *a, &mut want);
                    let got = &bytes[8 + n + *a as usize..8 + n + *b as usize];
                    assert!(got == want.as_slice(), "{name}: tensor at {a} is not the generator's stream");
                }
            }
        }
        assert_eq!(index["metadata"]["total_size"], tensor_bytes);
    }
    // And the safetensors library itself opens them.
    let script = r#"
import sys, glob
from safetensors import safe_open
n = 0
for f in sorted(glob.glob(sys.argv[1] + "/step-*/*.safetensors")):
    with safe_open(f, framework="numpy") as sf:
        for k in sf.keys():
            s = sf.get_slice(k)
            assert s.get_dtype() == "BF16", (f, k, s.get_dtype())
            n += 1
print(n)
"#;
    let py =
        std::process::Command::new("python3").args(["-c", script, out.to_str().unwrap()]).output().expect("python3");
    assert!(py.status.success(), "safetensors could not open the shards: {}", String::from_utf8_lossy(&py.stderr));
    // tiny: embed + 2 layers x 9 + norm + lm_head = 21 tensors per step.
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "42");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn verify_rereads_the_workload_and_finds_a_flipped_byte() {
    let (dir, o) = ckpt("ckpt-verify", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let args = ckpt_args("verify", &dir, "99");
    let v = run_strings(&args);
    assert_eq!(v.status.code(), Some(0), "{}", shown(&v));
    assert!(shown(&v).contains("verified 10 objects: 10 identical, 0 not"), "{}", shown(&v));
    let shard = dir.join("out/step-000001/model-00002-of-00003.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&shard, bytes).unwrap();
    let v = run_strings(&args);
    assert_eq!(v.status.code(), Some(1), "{}", shown(&v));
    let err = shown(&v);
    assert!(err.contains("MISMATCH step-000001/model-00002-of-00003.safetensors"), "{err}");
    assert!(err.contains(&format!("differs at byte offset {mid}")), "{err}");
    // A different seed is a different recipe: nothing matches.
    assert_eq!(run_strings(&ckpt_args("verify", &dir, "100")).status.code(), Some(1));
    std::fs::remove_dir_all(dir).ok();
}

fn objects(name: &str, sets: &[&str]) -> (PathBuf, Output) {
    let dir = tempdir(name);
    let uri = format!("target.uri=\"file://{}\"", dir.join("out").display());
    let wl = root().join("workloads/objects.toml");
    let mut args =
        vec!["run", wl.to_str().unwrap(), "--set", &uri, "--set", "params.count=12", "--set", "params.size=200000"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let o = run(&args);
    (dir, o)
}

#[test]
fn objects_checks_pass_and_fail_as_they_should() {
    let (dir, o) = objects("objects-pass", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    let files = files_under(&dir.join("out"));
    assert_eq!(files.len(), 12, "{files:?}");
    for f in &files {
        let b = std::fs::read(dir.join("out").join(f)).unwrap();
        assert_eq!(&b[..8], b"DGENOBJ1");
        let payload = u64::from_le_bytes(b[8..16].try_into().unwrap()) as usize;
        assert_eq!(b.len(), 24 + payload + 4, "{f}");
        let footer = u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap());
        assert_eq!(footer, crc32c::crc32c(&b[..b.len() - 4]), "{f}: CRC32C footer");
    }
    std::fs::remove_dir_all(dir).ok();

    let (dir, o) = objects("objects-fail", &["params.min_gbps=1e9"]);
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let err = shown(&o);
    assert!(err.contains("FAIL throughput GB/s"), "{err}");
    assert!(err.contains("error: check 'throughput GB/s' failed"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

/// Runs a hostile plugin crate from tests/plugins; returns (output, files left in the target).
fn hostile(name: &str, sets: &[&str]) -> (Output, Vec<String>) {
    let dir = tempdir(&format!("hostile-{name}"));
    let wl = dir.join("w.toml");
    let out = dir.join("out");
    let crate_dir = root().join("tests/plugins").join(name);
    std::fs::write(
        &wl,
        format!(
            "name = \"hostile\"\nplugin = \"{}\"\n[target]\nuri = \"file://{}\"\n[limits]\nfuel = 3e8\nmemory = \"32MiB\"\n",
            crate_dir.display(),
            out.display()
        ),
    )
    .unwrap();
    let mut args = vec!["run", wl.to_str().unwrap(), "-q"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let o = run(&args);
    let left = files_under(&out);
    std::fs::remove_dir_all(dir).ok();
    (o, left)
}

#[test]
fn hostile_plugins_are_stopped_with_exit_4() {
    let cases: [(&str, &str); 9] = [
        ("trap", "trapped"),
        ("panic", "panicked at src/lib.rs"),
        ("endless", "ran out of fuel"),
        ("membomb", "exceeded its memory limit of 32 MiB"),
        ("escape", "target name '../escape.bin'"),
        ("absolute", "target name '/tmp/dgen-hostile-absolute.bin' must be relative"),
        ("oversize", "write of 2097152 bytes exceeds the 1048576 bytes allowed per call"),
        ("wasi", "imports wasi_snapshot_preview1::fd_write"),
        ("badcontract", "speaks contract dgen:plugin@2.0.0"),
    ];
    let mut failures = Vec::new();
    for (name, want) in cases {
        let (o, left) = hostile(name, &[]);
        let err = shown(&o);
        if o.status.code() != Some(4) {
            failures.push(format!("{name}: exit {:?}: {err}", o.status.code()));
        }
        let plugin_named = err.contains(&format!("plugin 'hostile-{name}")) || err.contains(&format!("plugins/{name}"));
        if !err.contains(want) || !plugin_named {
            failures.push(format!("{name}: message lacks '{want}' or the plugin's name: {err}"));
        }
        if name == "panic" && !err.contains("deliberate panic: the answer is 42") {
            failures.push(format!("panic: the panic message is not shown: {err}"));
        }
        if !left.is_empty() {
            failures.push(format!("{name}: left {left:?}"));
        }
    }
    // With fuel to spare, the deadline on its own running time stops the endless loop.
    let (o, left) = hostile("endless", &["limits.fuel=1e15", "limits.deadline=1"]);
    if o.status.code() != Some(4) || !shown(&o).contains("ran past its deadline of 1 s") || !left.is_empty() {
        failures.push(format!("endless with deadline: exit {:?}, left {left:?}: {}", o.status.code(), shown(&o)));
    }
    assert!(!std::path::Path::new("/tmp/dgen-hostile-absolute.bin").exists());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_workloads_give_exit_2_naming_file_line_and_key() {
    let dir = tempdir("bad-workloads");
    let plugin = root().join("plugins/objects");
    let head = format!("name = \"x\"\nplugin = \"{}\"\n", plugin.display());
    let cases: Vec<(&str, String, &str)> = vec![
        ("syntax.toml", format!("{head}[data]\ndedup = = 2\n"), "syntax.toml:4"),
        ("unknown.toml", format!("{head}[data]\ndedup = 2\ndedupe = 3\n"), "unknown.toml:5"),
        ("unknown-key-named.toml", format!("{head}[pipeline]\nbufers = 3\n"), "bufers"),
        ("type.toml", format!("{head}[data]\ncompress = \"lots\"\n"), "type.toml:4"),
        ("range.toml", format!("{head}[data]\ndedup = 0.5\n"), "range.toml:4: data.dedup"),
        ("unit.toml", format!("{head}[data]\ndedup_unit = \"3000\"\n"), "unit.toml:4: data.dedup_unit"),
        ("missing.toml", "name = \"x\"\nplugin = \"nowhere.wasm\"\n".to_string(), "missing.toml:2: plugin"),
        ("uri.toml", format!("{head}[target]\nuri = \"ftp://x\"\n"), "uri.toml:4: target.uri"),
    ];
    for (file, text, want) in cases {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let o = run(&["run", path.to_str().unwrap()]);
        let err = shown(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(want), "{file}: wanted '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
    let o = run(&["run", dir.join("nope.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(shown(&o).contains("nope.toml"));
    // A --set with a wrong type names the --set.
    let path = dir.join("ok.toml");
    std::fs::write(&path, &head).unwrap();
    let o = run(&["run", path.to_str().unwrap(), "--set", "pipeline.buffers=\"many\""]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(shown(&o).contains("--set pipeline.buffers"), "{}", shown(&o));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn plugin_build_inspect_and_pinning() {
    let dir = tempdir("plugin-pin");
    let wasm = dir.join("objects.wasm");
    let o = run(&["plugin", "build", root().join("plugins/objects").to_str().unwrap(), "-o", wasm.to_str().unwrap()]);
    assert!(o.status.success(), "{}", shown(&o));
    let i = run(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert!(i.status.success(), "{}", shown(&i));
    let text = String::from_utf8_lossy(&i.stdout);
    assert!(text.contains("name:     objects") && text.contains("contract: dgen:plugin@1.2.0"), "{text}");
    assert!(text.contains("distribution: fixed|uniform|lognormal"), "{text}");
    // The bare core module cargo made runs too: the host turns it into a component itself.
    // (Each plugin crate has a target directory of its own under plugin-target/.)
    let core = std::fs::read_dir(dgen_engine::plugin::build::cache_dir().join("plugin-target"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("wasm32-unknown-unknown/release/dgen_plugin_objects.wasm"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("cargo's core module");
    let core_copy = dir.join("core-objects.wasm");
    std::fs::copy(&core, &core_copy).expect("cargo's core module");
    assert!(wasmparser_is_core(&std::fs::read(&core_copy).unwrap()));
    let wl = dir.join("core.toml");
    std::fs::write(
        &wl,
        format!(
            "name = \"c\"\nplugin = \"core-objects.wasm\"\n[target]\nuri = \"file://{}\"\n[params]\ncount = 3\nsize = 5000\n",
            dir.join("core-out").display()
        ),
    )
    .unwrap();
    let o = run(&["run", wl.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    assert_eq!(files_under(&dir.join("core-out")).len(), 3);
    let sha = dgen_engine::plugin::sha256_hex(&std::fs::read(&wasm).unwrap());
    let out = dir.join("out");
    for (pin, code) in [(sha.clone(), 0), ("0".repeat(64), 4)] {
        let wl = dir.join("pinned.toml");
        std::fs::write(
            &wl,
            format!(
                "name = \"p\"\nplugin = {{ path = \"objects.wasm\", sha256 = \"{pin}\" }}\n[target]\nuri = \"file://{}\"\n[params]\ncount = 2\nsize = 1000\n",
                out.display()
            ),
        )
        .unwrap();
        let o = run(&["run", wl.to_str().unwrap(), "-q", "--json-report", dir.join("r.json").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(code), "{}", shown(&o));
        if code == 4 {
            assert!(shown(&o).contains("pins"), "{}", shown(&o));
        } else {
            let r: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
            assert_eq!(r["plugin"]["sha256"], sha.as_str());
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// The SDK README's "your first plugin" walk-through, followed literally: its Cargo.toml, its
/// src/lib.rs and its workload, built and run.
#[test]
fn the_sdk_readme_walkthrough_works() {
    let readme = std::fs::read_to_string(root().join("plugin-sdk/README.md")).unwrap();
    let blocks: Vec<(String, String)> = readme
        .split("```")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|c| c.get(1))
        .map(|b| {
            let (lang, body) = b.split_once('\n').unwrap_or((b, ""));
            (lang.trim().to_string(), body.to_string())
        })
        .collect();
    let cargo_toml = &blocks.iter().find(|(l, b)| l == "toml" && b.contains("[package]")).expect("Cargo.toml block").1;
    let lib_rs = &blocks.iter().find(|(l, _)| l == "rust").expect("lib.rs block").1;
    let workload = &blocks.iter().find(|(l, b)| l == "toml" && b.contains("[params]")).expect("workload block").1;
    let dir = tempdir("sdk-readme");
    let krate = dir.join("my-plugin");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let sdk = root().join("plugin-sdk");
    std::fs::write(
        krate.join("Cargo.toml"),
        cargo_toml.replace("/path/to/dgen-engine/plugin-sdk", sdk.to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(krate.join("src/lib.rs"), lib_rs).unwrap();
    let out = dir.join("out");
    let wl = dir.join("my-workload.toml");
    let workload = workload
        .replace("file://./out", &format!("file://{}", out.display()))
        .replace("files = 100", "files = 5")
        .replace("size = 10485760", "size = 100000")
        .replace("min_gbps = 0.5", "min_gbps = 0.0");
    std::fs::write(&wl, workload).unwrap();
    let o = run(&["run", wl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", shown(&o));
    assert!(shown(&o).contains("PASS files written"), "{}", shown(&o));
    let files = files_under(&out.join("data"));
    assert_eq!(files.len(), 5, "{files:?}");
    let b = std::fs::read(out.join("data").join(&files[0])).unwrap();
    assert_eq!(&b[..8], b"MYFORMAT");
    assert_eq!(b.len(), 16 + 100000 + 4);
    assert_eq!(u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()), crc32c::crc32c(&b[..b.len() - 4]));
    let v = run(&["verify", wl.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", shown(&v));
    std::fs::remove_dir_all(dir).ok();
}

/// A core module starts with the magic and version 1; a component has a different layer/version.
fn wasmparser_is_core(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
