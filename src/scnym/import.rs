//! Import a model trained by scNym 0.4 in Python: its `torch.save`d state dict
//! (`00_best_model_weights.pkl`) plus the gene and class lists, into a bundle. Native only (the
//! PyTorch reader needs a file); the resulting bundle loads anywhere, the browser included.
use std::path::Path;

use burn::prelude::Device;
use pytorch_reader::{DType, PytorchReader};

use crate::error::{Result, SclabelError};
use crate::scnym::bundle::{HostTensors, Provenance, ScnymModel};
use crate::scnym::model::ArchSpec;

fn bad(path: &Path, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: path.display().to_string(), reason: reason.into() }
}

/// Reads every floating-point tensor of a PyTorch checkpoint as f32.
pub fn read_torch_state_dict(path: &Path) -> Result<HostTensors> {
    let reader = PytorchReader::new(path).map_err(|e| bad(path, format!("not a PyTorch checkpoint: {e}")))?;
    let mut out = HostTensors::new();
    for (name, t) in reader.tensors() {
        let bytes = t.read().map_err(|e| bad(path, e.to_string()))?;
        let values: Vec<f32> = match t.dtype() {
            DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            DType::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
            _ => continue, // num_batches_tracked and other integer buffers
        };
        out.insert(name.clone(), (t.shape().to_vec(), values));
    }
    Ok(out)
}

/// Infers scNym's architecture from state-dict shapes (`embed.{0,4,8,…}` Linear layers,
/// `classif.0` output). The 0.3.2 layout (`classif.{0,1,4,…}` with tied layers) is refused.
pub fn infer_arch(t: &HostTensors, path: &Path) -> Result<ArchSpec> {
    if t.contains_key("classif.1.weight") {
        return Err(bad(path, "this is a scNym 0.3 checkpoint (classif.* layout); only scNym 0.4 state dicts (embed.* + classif.0) are supported"));
    }
    let shape = |k: &str| t.get(k).map(|(s, _)| s.clone()).ok_or_else(|| bad(path, format!("no tensor '{k}': not a scNym 0.4 CellTypeCLF state dict")));
    let first = shape("embed.0.weight")?;
    let out = shape("classif.0.weight")?;
    if t.keys().any(|k| k.starts_with("embed.8.linear") || k.contains("res")) {
        return Err(bad(path, "residual scNym models are not supported for import"));
    }
    let mut n_blocks = 1;
    while t.contains_key(&format!("embed.{}.weight", 4 * n_blocks)) {
        n_blocks += 1;
    }
    if n_blocks < 2 {
        return Err(bad(path, "expected at least two hidden blocks (embed.0 and embed.4)"));
    }
    let second = shape("embed.4.weight")?;
    if first.len() != 2 || out.len() != 2 || second.len() != 2 {
        return Err(bad(path, "Linear weights must be 2-D"));
    }
    Ok(ArchSpec {
        n_genes: first[1],
        n_classes: out[0],
        n_hidden_init: first[0],
        n_hidden: second[0],
        n_layers: n_blocks - 1,
        init_dropout: 0.0,
        residual: false,
    })
}

/// Reads a one-name-per-line list (genes, classes); blank trailing lines are ignored.
pub fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
    let v: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    let end = v.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
    Ok(v[..end].to_vec())
}

pub fn import_scnym(weights: &Path, genes: &Path, classes: &Path, device: &Device) -> Result<ScnymModel> {
    let tensors = read_torch_state_dict(weights)?;
    let arch = infer_arch(&tensors, weights)?;
    let genes = read_list(genes)?;
    let classes = read_list(classes)?;
    let mut model = ScnymModel::from_host_tensors(arch, &tensors, genes, classes, device)?;
    model.provenance = Provenance {
        created_by: format!("sclabel {}", env!("CARGO_PKG_VERSION")),
        source: "imported from scNym".into(),
        details: [("weights".to_string(), weights.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())].into_iter().collect(),
    };
    Ok(model)
}
