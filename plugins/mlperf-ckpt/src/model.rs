//! What each rank of an MLPerf Storage checkpointing run writes: the models, their parallelism, and
//! the per-rank file set with every tensor's element count — computed as DLIO computes them.
//!
//! Sources (DLIO `dlio_benchmark/checkpointing/base_checkpointing.py`, 2025; MLPerf Storage v2.0
//! `configs/dlio/workload/llama3_*.yaml` and `mlpstorage/config.py`):
//! - the models' shapes and parallelism: the YAMLs (`num_layers`, `hidden_size`, `ffn_hidden_size`,
//!   `num_attention_heads`, `num_kv_heads`, `vocab_size`, `parallelism.tensor/pipeline/zero_stage`);
//!   the CLOSED rank counts (8, 64, 512, 1024) and the subset size (8): `LLM_ALLOWED_VALUES`;
//! - ranks: `tp = r % TP`, `pp = (r / TP) % PP`, `dp = r / (TP·PP)`, `mp = r % (TP·PP)`; data
//!   parallelism `DP = ranks / (TP·PP)`, or in subset mode the full run's (`closed / (TP·PP)`);
//! - layers `0 … L+2` (0 the embedding, `L+1` the LM head, `L+2` the final norm) over pipeline
//!   stages: `get_layer_index`;
//! - a layer's tensors (fp16): `get_layer_parameters`, sharded by DP under ZeRO 3;
//! - the optimizer state (fp32): `get_optimization_groups`, `[n, 5h, n, 5h, n, 5h]` with
//!   `n = parameters / (DP·TP·PP)`, and the parameter count `get_num_parameters`;
//! - the files: `save_checkpoint` (ZeRO 3: one `zero_pp_rank_{dp}_mp_rank_{mp}_model_states` per
//!   rank; ZeRO 1 with PP > 1: `layer_{i}-model_{mp}_model_states` per layer, by DP rank 0 only;
//!   ZeRO 1 without PP: `model_{mp}_model_states`; every rank `…_optim_states`), in folder
//!   `global_epoch1_step{N}` for checkpoint N (1-based), extension `.pt`;
//! - the checkpoint size: model bytes plus optimizer bytes of all ranks, in GiB (`checkpoint_size`,
//!   reported as "GB").

/// A model as the MLPerf Storage YAML gives it.
#[derive(Clone, Debug)]
pub struct Model {
    pub name: &'static str,
    pub layers: u64,
    pub hidden: u64,
    pub ffn: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub vocab: u64,
    pub tp: u64,
    pub pp: u64,
    pub zero: u32,
    /// Ranks of a CLOSED full run.
    pub closed: u64,
}

/// Ranks of a subset run (MLPerf's `LLM_SUBSET_PROCS`).
pub const SUBSET_RANKS: u64 = 8;

pub const MODELS: &[&str] = &["llama3-8b", "llama3-70b", "llama3-405b", "llama3-1t"];

pub fn model(name: &str) -> Result<Model, String> {
    let m = |name, layers, hidden, ffn, heads, kv_heads, tp, pp, zero, closed| Model {
        name,
        layers,
        hidden,
        ffn,
        heads,
        kv_heads,
        vocab: 128256,
        tp,
        pp,
        zero,
        closed,
    };
    Ok(match name {
        "llama3-8b" => m("llama3-8b", 32, 4096, 14336, 32, 8, 1, 1, 3, 8),
        "llama3-70b" => m("llama3-70b", 80, 8192, 28672, 128, 8, 8, 1, 3, 64),
        "llama3-405b" => m("llama3-405b", 126, 16384, 53248, 128, 8, 8, 32, 1, 512),
        "llama3-1t" => m("llama3-1t", 128, 25872, 98304, 192, 32, 8, 64, 1, 1024),
        other => return Err(format!("unknown model '{other}' (one of {})", MODELS.join(", "))),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// One 1-D tensor of a file: where it sits in the saved dict (keys from the top), its type and
/// element count.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub path: Vec<String>,
    pub dtype: Dtype,
    pub numel: u64,
}

/// One file a rank saves per checkpoint.
#[derive(Clone, Debug)]
pub struct File {
    /// The name inside the checkpoint's step folder, with `.pt`.
    pub name: String,
    pub tensors: Vec<Tensor>,
    /// Model state (true) or optimizer state.
    pub model: bool,
}

impl File {
    /// Tensor bytes: what DLIO counts.
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.numel * t.dtype.bytes()).sum()
    }
}

/// How a run lays the model out over its ranks.
#[derive(Clone, Debug)]
pub struct Layout {
    pub model: Model,
    /// Ranks that exist (write files).
    pub ranks: u64,
    /// Data parallelism the files are sharded for.
    pub dp: u64,
    /// Every tensor's element count is multiplied by this (rounded up, at least 1): 1 for the
    /// real sizes.
    pub scale: f64,
}

impl Layout {
    pub fn new(model: Model, ranks: u64, subset: bool, scale: f64) -> Result<Layout, String> {
        let mp = model.tp * model.pp;
        let dp = if subset {
            let dp = model.closed / mp;
            if ranks > dp * mp {
                return Err(format!(
                    "subset mode with {ranks} ranks: a {} checkpoint has only {} ranks' shares",
                    model.name,
                    dp * mp
                ));
            }
            dp
        } else {
            if ranks < mp || ranks % mp != 0 {
                return Err(format!(
                    "{} ranks for {}: the ranks must be a multiple of its model parallelism TP {} x PP {} = {mp} \
                     (or use subset = true, {SUBSET_RANKS} ranks writing their share of the full checkpoint)",
                    ranks, model.name, model.tp, model.pp
                ));
            }
            ranks / mp
        };
        Ok(Layout { model, ranks, dp, scale })
    }

    pub fn mp(&self) -> u64 {
        self.model.tp * self.model.pp
    }

    /// Parameters of the whole model (DLIO's `get_num_parameters`).
    pub fn parameters(&self) -> u64 {
        let m = &self.model;
        let dim_kv = m.hidden / m.heads * m.kv_heads;
        let embedding = m.vocab * m.hidden;
        let per_layer =
            m.hidden + m.hidden * (m.hidden + 2 * dim_kv) + m.hidden * m.hidden + m.hidden + 3 * m.ffn * m.hidden;
        embedding + per_layer * m.layers + m.hidden + embedding
    }

    /// The first and last layer index of pipeline stage `pp` (DLIO's `get_layer_index`).
    pub fn layer_range(&self, pp: u64) -> (u64, u64) {
        let (l, stages) = (self.model.layers, self.model.pp);
        let (per, rem) = (l / stages, l % stages);
        let (mut start, mut end) = if pp < rem {
            let s = pp * (per + 1) + 1;
            (s, s + per)
        } else {
            let s = rem * (per + 1) + (pp - rem) * per + 1;
            (s, s + per - 1)
        };
        if pp == stages - 1 {
            end = l + 2;
        }
        if pp == 0 {
            start = 0;
        }
        (start, end)
    }

    /// Element counts of layer `i`'s tensors on one rank (DLIO's `get_layer_parameters`).
    fn layer_params(&self, i: u64) -> Vec<u64> {
        let m = &self.model;
        let (h, tp) = (m.hidden, m.tp);
        let sf = if m.zero < 3 { 1 } else { self.dp };
        let dim_kv = h / m.heads * m.kv_heads;
        if i == 0 || i == m.layers + 1 {
            vec![h * m.vocab / tp / sf]
        } else if i == m.layers + 2 {
            vec![h / sf]
        } else {
            vec![
                h / sf,
                h * (h + 2 * dim_kv) / tp / sf,
                h * h / tp / sf,
                h / sf,
                h * 2 * m.ffn / tp / sf,
                h * m.ffn / tp / sf,
            ]
        }
    }

    fn scaled(&self, n: u64) -> u64 {
        if self.scale >= 1.0 {
            n
        } else {
            ((n as f64 * self.scale).ceil() as u64).max(1)
        }
    }

    /// A layer's tensors, keyed by their index in the layer.
    fn layer_state(&self, i: u64, prefix: &[String]) -> Vec<Tensor> {
        self.layer_params(i)
            .into_iter()
            .enumerate()
            .filter(|&(_, n)| n > 0)
            .map(|(k, n)| {
                let mut path = prefix.to_vec();
                path.push(k.to_string());
                Tensor { path, dtype: Dtype::F16, numel: self.scaled(n) }
            })
            .collect()
    }

    /// The files rank `r` saves per checkpoint, in the order it saves them.
    pub fn files(&self, r: u64) -> Vec<File> {
        let m = &self.model;
        let mp_n = self.mp();
        let (pp, dp, mp) = ((r / m.tp) % m.pp, r / mp_n, r % mp_n);
        let (start, end) = self.layer_range(pp);
        let mut out = Vec::new();
        let zero_pp = format!("zero_pp_rank_{dp}_mp_rank_{mp}");
        if m.layers > 0 && !(m.zero == 1 && dp != 0) {
            if m.zero > 0 && m.zero < 3 {
                if m.pp > 1 {
                    for i in start..=end {
                        out.push(File {
                            name: format!("layer_{i}-model_{mp}_model_states.pt"),
                            tensors: self.layer_state(i, &[]),
                            model: true,
                        });
                    }
                } else {
                    let tensors = (start..=end).flat_map(|i| self.layer_state(i, &[i.to_string()])).collect();
                    out.push(File { name: format!("model_{mp}_model_states.pt"), tensors, model: true });
                }
            } else {
                let tensors = (start..=end).flat_map(|i| self.layer_state(i, &[i.to_string()])).collect();
                out.push(File { name: format!("{zero_pp}_model_states.pt"), tensors, model: true });
            }
        }
        let n = self.parameters() / (self.dp * mp_n);
        let h5 = 5 * m.hidden;
        let groups = [n, h5, n, h5, n, h5];
        let tensors: Vec<Tensor> = groups
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(k, &n)| Tensor { path: vec![k.to_string()], dtype: Dtype::F32, numel: self.scaled(n) })
            .collect();
        if !tensors.is_empty() {
            out.push(File { name: format!("{zero_pp}_optim_states.pt"), tensors, model: false });
        }
        out
    }

    /// The checkpoint's size as DLIO reports it: every existing rank's tensor bytes, in GiB.
    pub fn checkpoint_gib(&self) -> f64 {
        let bytes: u64 = (0..self.ranks).flat_map(|r| self.files(r)).map(|f| f.bytes()).sum();
        bytes as f64 / (1u64 << 30) as f64
    }
}

/// The folder of checkpoint `n` (1-based), as DLIO names it.
pub fn step_folder(n: u32) -> String {
    format!("global_epoch1_step{n}")
}
