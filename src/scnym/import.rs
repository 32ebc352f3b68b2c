//! Import a model trained by scNym 0.4 in Python: its `torch.save`d state dict
//! (`00_best_model_weights.pkl`) plus the gene and class lists, into a bundle. Works from bytes
//! (native and wasm).
use burn::prelude::Device;

use crate::error::{Result, SclabelError};
use crate::scnym::bundle::{HostTensors, Provenance, ScnymModel};
use crate::scnym::model::ArchSpec;
use crate::scnym::torch_file::read_state_dict;

fn bad(file: &str, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: file.into(), reason: reason.into() }
}

/// Infers scNym's architecture from state-dict shapes (`embed.{0,4,8,…}` Linear layers,
/// `classif.0` output). The 0.3.2 layout (`classif.{0,1,4,…}` with tied layers) is refused.
pub fn infer_arch(t: &HostTensors, path: &str) -> Result<ArchSpec> {
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

/// Splits a one-name-per-line list (genes, classes); trailing blank lines are ignored.
pub fn parse_list(text: &str) -> Vec<String> {
    // A byte-order mark (Windows editors write one) would otherwise become part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let v: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_string()).collect();
    let end = v.iter().rposition(|l| !l.is_empty()).map_or(0, |i| i + 1);
    v[..end].to_vec()
}

/// `weights`: the bytes of scNym's `00_best_model_weights.pkl` (named `weights_name` in errors).
pub fn import_scnym(weights: &[u8], weights_name: &str, genes: Vec<String>, classes: Vec<String>, device: &Device) -> Result<ScnymModel> {
    for (what, list) in [("genes", &genes), ("classes", &classes)] {
        let mut seen = std::collections::HashSet::new();
        if let Some(name) = list.iter().find(|n| n.is_empty() || !seen.insert(n.as_str())) {
            let reason = if name.is_empty() { "has an empty name".to_string() } else { format!("names '{name}' twice") };
            return Err(SclabelError::InvalidOption { option: what.into(), reason: format!("the {what} list {reason}: each line names one, once") });
        }
    }
    let tensors = read_state_dict(weights).map_err(|e| bad(weights_name, format!("not a PyTorch state dict: {e}")))?;
    let arch = infer_arch(&tensors, weights_name)?;
    let mut model = ScnymModel::from_host_tensors(arch, &tensors, genes, classes, device)?;
    model.provenance = Provenance {
        created_by: format!("sclabel {}", env!("CARGO_PKG_VERSION")),
        source: "imported from scNym".into(),
        details: [("weights".to_string(), weights_name.to_string())].into_iter().collect(),
    };
    Ok(model)
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn lists_lose_a_byte_order_mark_and_crlf() {
        assert_eq!(parse_list("\u{feff}CD3E\r\nMS4A1\r\n\r\n"), vec!["CD3E".to_string(), "MS4A1".to_string()]);
    }

    #[test]
    fn duplicate_or_empty_names_are_refused_before_the_weights_are_read() {
        let device = crate::backend::cpu(crate::backend::BackendRequest::Cpu, "test").unwrap().device;
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = import_scnym(b"", "w.pkl", names(&["A", "B"]), names(&["T", "B", "T"]), &device).unwrap_err();
        assert!(e.to_string().contains("classes list names 'T' twice"), "{e}");
        let e = import_scnym(b"", "w.pkl", names(&["A", "", "B"]), names(&["T", "B"]), &device).unwrap_err();
        assert!(e.to_string().contains("genes list has an empty name"), "{e}");
    }
}
