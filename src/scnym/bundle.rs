//! The model bundle: one safetensors file holding the classifier's weights under scNym 0.4's
//! state-dict names (Linear weights [out, in], as PyTorch stores them, so
//! `CellTypeCLF.load_state_dict(safetensors.torch.load_file(path))` works in Python) and, in the
//! safetensors metadata, JSON for the format version, architecture, genes, classes, input
//! normalisation, training config, metrics and provenance. Written and read from bytes, natively
//! and in wasm; writing reads the weights back with one async transaction (WebGPU-safe).
use std::collections::{BTreeMap, HashMap};

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::Transaction;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};
use crate::scnym::config::ScnymConfig;
use crate::scnym::metrics::TrainMetrics;
use crate::scnym::model::{ArchSpec, Block, BnState, Norm, ResidualTail, ScnymNet};

pub const FORMAT: &str = "sclabel-bundle";
pub const FORMAT_VERSION: u32 = 1;

/// What the model expects as input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Always "log1p_cpm": ln(counts / total · 1e6 + 1).
    pub transform: String,
    pub target_total: f64,
}

impl Default for InputSpec {
    fn default() -> Self {
        Self { transform: "log1p_cpm".into(), target_total: 1e6 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// "sclabel <version>".
    pub created_by: String,
    /// "trained" or "imported from scNym".
    pub source: String,
    /// Anything else worth keeping (data set name, label column, domain column, backend …), in
    /// name order so that the same model always makes the same bytes.
    pub details: BTreeMap<String, String>,
}

/// A trained scNym classifier with everything needed to use it on new data.
#[derive(Debug, Clone)]
pub struct ScnymModel {
    pub arch: ArchSpec,
    pub net: ScnymNet,
    pub bn: BnState,
    pub genes: Vec<String>,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub config: Option<ScnymConfig>,
    pub metrics: Option<TrainMetrics>,
    pub provenance: Provenance,
}

/// A named host tensor: shape + f32 values (row-major, PyTorch layout).
pub type HostTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// (name, kind) in state-dict order; kinds: linear weight/bias, norm parts.
fn layout(arch: &ArchSpec) -> Vec<(String, Part)> {
    let mut out = Vec::new();
    let mut norm_k = 0;
    for i in 0..arch.block_widths().len() {
        let p = format!("embed.{}", 4 * i);
        let bn = format!("embed.{}", 4 * i + 1);
        if arch.residual && i >= 2 {
            // ResBlock internals sit under the block's Linear slot; the block's own BN after.
            out.push((format!("{p}.linear0"), Part::Linear(i, 0)));
            out.push((format!("{p}.bn0"), Part::Norm(norm_k)));
            out.push((format!("{p}.linear1"), Part::Linear(i, 1)));
            out.push((format!("{p}.bn1"), Part::Norm(norm_k + 1)));
            out.push((bn, Part::Norm(norm_k + 2)));
            norm_k += 3;
        } else {
            out.push((p, Part::Linear(i, 0)));
            out.push((bn, Part::Norm(norm_k)));
            norm_k += 1;
        }
    }
    out.push(("classif.0".into(), Part::Output));
    out
}

#[derive(Debug, Clone, Copy)]
enum Part {
    /// block, 0 = the block's Linear, 1 = the residual tail's Linear
    Linear(usize, usize),
    /// index in forward order
    Norm(usize),
    Output,
}

fn linear_of(net: &ScnymNet, part: Part) -> &Linear {
    match part {
        Part::Linear(b, 0) => &net.blocks[b].linear,
        Part::Linear(b, _) => &net.blocks[b].residual.as_ref().expect("residual").linear,
        Part::Output => &net.output,
        Part::Norm(_) => unreachable!(),
    }
}

fn norms_in_order(net: &ScnymNet) -> Vec<&Norm> {
    let mut v = Vec::new();
    for b in &net.blocks {
        v.push(&b.norm);
        if let Some(r) = &b.residual {
            v.push(&r.norm);
            v.push(&r.outer);
        }
    }
    v
}

fn bad(reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: "model bundle".into(), reason: reason.into() }
}

/// SHA-256 (hex) of a bundle's tensors — name, dtype, shape and bytes of each, in name order —
/// stored in its metadata as `tensors_sha256`, so damaged weights are refused on load rather than
/// predicting differently without a word.
pub(crate) fn tensors_sha256<'a>(tensors: impl Iterator<Item = (&'a str, Dtype, &'a [usize], &'a [u8])>) -> String {
    use sha2::{Digest, Sha256};
    let mut all: Vec<_> = tensors.collect();
    all.sort_unstable_by_key(|t| t.0);
    let mut h = Sha256::new();
    for (name, dtype, shape, bytes) in all {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(format!("{dtype:?}").as_bytes());
        h.update((shape.len() as u64).to_le_bytes());
        for &d in shape {
            h.update((d as u64).to_le_bytes());
        }
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl ScnymModel {
    /// The weights and running statistics as named host tensors in PyTorch layout (async: one
    /// read-back transaction, WebGPU-safe), in the bundle's order.
    pub async fn host_tensors(&self) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>> {
        let parts = layout(&self.arch);
        let norms = norms_in_order(&self.net);
        // Gather every tensor in a fixed order for one transaction.
        let mut names = Vec::new();
        let mut tx = Transaction::default();
        for (name, part) in &parts {
            match *part {
                Part::Norm(k) => {
                    for (leaf, t) in [
                        ("weight", norms[k].gamma.val()),
                        ("bias", norms[k].beta.val()),
                        ("running_mean", self.bn.mean[k].clone()),
                        ("running_var", self.bn.var[k].clone()),
                    ] {
                        names.push((format!("{name}.{leaf}"), false));
                        tx = tx.register(t);
                    }
                }
                p => {
                    let l = linear_of(&self.net, p);
                    names.push((format!("{name}.weight"), true));
                    tx = tx.register(l.weight.val());
                    names.push((format!("{name}.bias"), false));
                    tx = tx.register(l.bias.as_ref().ok_or_else(|| bad("a Linear layer has no bias"))?.val());
                }
            }
        }
        let device = self.bn.mean[0].device();
        let datas = tx.execute_async().await.map_err(|e| SclabelError::backend(&device, e))?;
        let mut tensors = Vec::new();
        for ((name, transpose), data) in names.into_iter().zip(datas) {
            let shape = data.shape().to_vec();
            let mut v: Vec<f32> = data.try_into_vec_as::<f32>().map_err(|e| SclabelError::backend(&device, e))?;
            let shape = if transpose {
                // burn keeps [in, out]; PyTorch and the file use [out, in].
                let (r, c) = (shape[0], shape[1]);
                v = transpose_host(&v, r, c);
                vec![c, r]
            } else {
                shape
            };
            tensors.push((name, shape, v));
        }
        Ok(tensors)
    }

    /// Serialises to safetensors bytes (async: reads the weights back from the device).
    pub async fn to_bytes(&self) -> Result<Vec<u8>> {
        let parts = layout(&self.arch);
        let tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
            self.host_tensors().await?.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|f| f.to_le_bytes()).collect())).collect();
        // PyTorch's BatchNorm1d also has num_batches_tracked; keep it so load_state_dict is strict-clean.
        let mut counters = Vec::new();
        for (name, part) in &parts {
            if let Part::Norm(_) = part {
                counters.push((format!("{name}.num_batches_tracked"), self.bn.updates.to_le_bytes().to_vec()));
            }
        }
        let mut views = Vec::new();
        for (name, shape, bytes) in &tensors {
            views.push((name.clone(), TensorView::new(Dtype::F32, shape.clone(), bytes).map_err(|e| bad(format!("{e}")))?));
        }
        for (name, bytes) in &counters {
            views.push((name.clone(), TensorView::new(Dtype::I64, vec![], bytes).map_err(|e| bad(format!("{e}")))?));
        }
        let mut meta = HashMap::new();
        let checksum = tensors_sha256(views.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
        meta.insert("tensors_sha256".to_string(), checksum);
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert("model".to_string(), "scnym".to_string());
        meta.insert("arch".to_string(), json(&self.arch));
        meta.insert("genes".to_string(), json(&self.genes));
        meta.insert("classes".to_string(), json(&self.classes));
        meta.insert("input".to_string(), json(&self.input));
        meta.insert("provenance".to_string(), json(&self.provenance));
        if let Some(c) = &self.config {
            meta.insert("config".to_string(), json(c));
        }
        if let Some(m) = &self.metrics {
            meta.insert("metrics".to_string(), json(m));
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| bad(format!("{e}")))
    }

    /// Reads a bundle written by [`to_bytes`](Self::to_bytes), checking what it is before use.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("{e}")))?;
        let meta = header.metadata().clone().ok_or_else(|| bad("no metadata: not an sclabel bundle"))?;
        let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("metadata has no '{k}'")));
        if get("format")? != FORMAT {
            return Err(bad(format!("format is '{}', expected '{FORMAT}'", get("format")?)));
        }
        let version: u32 = get("format_version")?.parse().map_err(|_| bad("format_version is not a number"))?;
        if version > FORMAT_VERSION {
            return Err(SclabelError::UnsupportedVersion {
                file: "model bundle".into(),
                what: "bundle format version".into(),
                found: version.to_string(),
                supported: format!("up to {FORMAT_VERSION}"),
                advice: "update sclabel".into(),
            });
        }
        if get("model")? != "scnym" {
            return Err(bad(format!(
                "model kind '{}' is not scnym{}",
                get("model")?,
                if get("model")? == "celltypist" { " (a CellTypist model: load it with loadCelltypist, or sclabel predict --model)" } else { "" }
            )));
        }
        fn parse<T: serde::de::DeserializeOwned>(s: &str, key: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| bad(format!("metadata '{key}': {e}")))
        }
        let arch: ArchSpec = parse(get("arch")?, "arch")?;
        let genes: Vec<String> = parse(get("genes")?, "genes")?;
        let classes: Vec<String> = parse(get("classes")?, "classes")?;
        let input: InputSpec = parse(get("input")?, "input")?;
        // Every door brings data to ln(CPM+1) for a model; a bundle saying it wants anything
        // else would be scored on the wrong scale, so it is refused rather than ignored.
        if input != InputSpec::default() {
            return Err(bad(format!(
                "metadata 'input' says the model expects {} with target total {}; this sclabel feeds models ln(CPM+1) only (log1p_cpm, 1e6)",
                input.transform, input.target_total
            )));
        }
        let provenance: Provenance = parse(get("provenance")?, "provenance")?;
        // Bundles from before the checksum (2026-12-04) have none and load unchecked.
        if let Some(want) = meta.get("tensors_sha256") {
            let tensors = st.tensors();
            let got = tensors_sha256(tensors.iter().map(|(n, v)| (n.as_str(), v.dtype(), v.shape(), v.data())));
            if &got != want {
                return Err(bad(format!("its tensors' SHA-256 is {got}, not the {want} it was saved with: the file is damaged")));
            }
        }
        let config = meta.get("config").map(|s| parse(s, "config")).transpose()?;
        let metrics = meta.get("metrics").map(|s| parse(s, "metrics")).transpose()?;
        let mut host = HostTensors::new();
        for (name, view) in st.tensors() {
            if view.dtype() == Dtype::F32 {
                let v: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                host.insert(name, (view.shape().to_vec(), v));
            }
        }
        let updates = st
            .tensor("embed.1.num_batches_tracked")
            .ok()
            .filter(|v| v.dtype() == Dtype::I64 && v.data().len() == 8)
            .map(|v| i64::from_le_bytes(v.data().try_into().expect("8 bytes")) as u64)
            .unwrap_or(0);
        let mut model = Self::from_host_tensors(arch, &host, genes, classes, device)?;
        model.bn.updates = updates;
        model.input = input;
        model.provenance = provenance;
        model.config = config;
        model.metrics = metrics;
        Ok(model)
    }

    /// Builds a model from named host tensors in PyTorch layout (bundle files, scNym imports).
    pub fn from_host_tensors(arch: ArchSpec, host: &HostTensors, genes: Vec<String>, classes: Vec<String>, device: &Device) -> Result<Self> {
        // A damaged or hand-edited architecture is refused before any size is derived from it.
        if [arch.n_genes, arch.n_classes, arch.n_hidden, arch.n_hidden_init, arch.n_layers].contains(&0) {
            return Err(bad(format!("the architecture has a zero size: {arch:?}")));
        }
        if arch.n_layers > host.len() {
            return Err(bad(format!("the architecture has {} hidden layers but the file holds only {} tensors", arch.n_layers, host.len())));
        }
        if !(0.0..1.0).contains(&arch.init_dropout) {
            return Err(bad(format!("init_dropout {} is outside [0, 1)", arch.init_dropout)));
        }
        if genes.len() != arch.n_genes {
            return Err(bad(format!("{} genes listed for a model with {} inputs", genes.len(), arch.n_genes)));
        }
        if classes.len() != arch.n_classes {
            return Err(bad(format!("{} classes listed for a model with {} outputs", classes.len(), arch.n_classes)));
        }
        crate::data::align::check_unique(&genes, "the model's gene list")?;
        let mut seen = std::collections::HashSet::new();
        if let Some(c) = classes.iter().find(|c| c.is_empty() || !seen.insert(c.as_str())) {
            return Err(bad(if c.is_empty() { "the class list has an empty name".to_string() } else { format!("the class list names '{c}' twice") }));
        }
        let take = |name: &str, shape: &[usize]| -> Result<Tensor<1>> {
            let (s, v) = host.get(name).ok_or_else(|| bad(format!("missing tensor '{name}'")))?;
            if s != shape {
                return Err(bad(format!("tensor '{name}' has shape {s:?}, expected {shape:?}")));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(bad(format!("tensor '{name}' has a non-finite value at {i}")));
            }
            if let Some(i) = v.iter().position(|&x| x < 0.0).filter(|_| name.ends_with("running_var")) {
                return Err(bad(format!("tensor '{name}' has a negative variance ({}) at {i}", v[i])));
            }
            Ok(Tensor::from_data(TensorData::new(v.clone(), [v.len()]), device))
        };
        let linear = |name: &str, fan_in: usize, fan_out: usize| -> Result<Linear> {
            let (_, w) = host.get(&format!("{name}.weight")).ok_or_else(|| bad(format!("missing tensor '{name}.weight'")))?;
            take(&format!("{name}.weight"), &[fan_out, fan_in])?;
            let w = transpose_host(w, fan_out, fan_in);
            Ok(Linear {
                weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [fan_in, fan_out]), device)),
                bias: Some(Param::from_tensor(take(&format!("{name}.bias"), &[fan_out])?)),
            })
        };
        // Running statistics in forward order, collected as the norms are built.
        let (mut means, mut vars) = (Vec::new(), Vec::new());
        let mut norm = |name: &str, width: usize| -> Result<Norm> {
            means.push(take(&format!("{name}.running_mean"), &[width])?);
            vars.push(take(&format!("{name}.running_var"), &[width])?);
            Ok(Norm {
                gamma: Param::from_tensor(take(&format!("{name}.weight"), &[width])?),
                beta: Param::from_tensor(take(&format!("{name}.bias"), &[width])?),
            })
        };
        let widths = arch.block_widths();
        let mut blocks = Vec::new();
        let mut fan_in = arch.n_genes;
        for (i, &w) in widths.iter().enumerate() {
            let p = format!("embed.{}", 4 * i);
            let bn = format!("embed.{}", 4 * i + 1);
            if arch.residual && i >= 2 {
                let l0 = linear(&format!("{p}.linear0"), fan_in, w)?;
                let n0 = norm(&format!("{p}.bn0"), w)?;
                let l1 = linear(&format!("{p}.linear1"), w, w)?;
                let n1 = norm(&format!("{p}.bn1"), w)?;
                let outer = norm(&bn, w)?;
                blocks.push(Block { linear: l0, norm: n0, residual: Some(ResidualTail { linear: l1, norm: n1, outer }) });
            } else {
                let l = linear(&p, fan_in, w)?;
                let n = norm(&bn, w)?;
                blocks.push(Block { linear: l, norm: n, residual: None });
            }
            fan_in = w;
        }
        let output = linear("classif.0", fan_in, arch.n_classes)?;
        let bn = BnState { mean: means, var: vars, updates: 0 };
        Ok(Self {
            arch,
            net: ScnymNet { blocks, output },
            bn,
            genes,
            classes,
            input: InputSpec::default(),
            config: None,
            metrics: None,
            provenance: Provenance { created_by: format!("sclabel {}", env!("CARGO_PKG_VERSION")), ..Default::default() },
        })
    }
}

pub fn transpose_host(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("metadata serialises")
}
