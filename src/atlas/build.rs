//! `sclabel atlas build`: a labelled reference → an atlas package (the preconverted matrix, an
//! scNym model trained on exactly that matrix, and a manifest). No file I/O: the CLI writes the parts.
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::matrix::{AtlasMatrix, ValueEncoding};
use crate::data::anndata::AnnData;
use crate::scnym::api::{prepare_input_with, train_transfer, TransferOptions};
use crate::train::progress::Observer;
use crate::{Result, SclabelError};
use burn::prelude::Device;

pub const MANIFEST_FORMAT: &str = "sclabel-atlas";
pub const MANIFEST_VERSION: u32 = 1;
pub const MATRIX_FILE: &str = "matrix.safetensors.zlib";
pub const MODEL_FILE: &str = "model.safetensors";

/// What the atlas is and how it is built. Descriptive fields go into the manifest as given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct AtlasOptions {
    pub id: String,
    pub name: Option<String>,
    pub species: Option<String>,
    pub tissue: Option<String>,
    /// Licence and provenance of the source data (they travel with the atlas).
    pub license: Option<String>,
    pub source: Option<String>,
    /// Label → Cell Ontology ID, where known.
    pub ontology: std::collections::BTreeMap<String, String>,
    pub label_key: String,
    pub domain_key: Option<String>,
    pub use_raw: bool,
    /// Convert the reference to ln(CPM+1) first (otherwise it must already be).
    pub normalize: bool,
    pub max_cells_per_class: Option<usize>,
    pub values: ValueEncoding,
    /// scNym training of the shipped model (preset + config keys, as `trainScnym`).
    #[cfg_attr(test, ts(type = "ScnymPreset"))]
    pub preset: String,
    #[cfg_attr(test, ts(as = "Option<crate::scnym::config::ScnymConfig>"))]
    pub config: Option<serde_json::Value>,
    pub seed: u64,
}

impl Default for AtlasOptions {
    fn default() -> Self {
        Self {
            id: "atlas".into(),
            name: None,
            species: None,
            tissue: None,
            license: None,
            source: None,
            ontology: Default::default(),
            label_key: "cell_type".into(),
            domain_key: None,
            use_raw: false,
            normalize: false,
            max_cells_per_class: None,
            values: ValueEncoding::Q8,
            // No query at build time: the model is supervised (+ the adversary across domains when
            // there are some); fine-tuning against a user's cells is the semi-supervised step.
            preset: "no_new_identity".into(),
            config: None,
            seed: 0,
        }
    }
}

pub struct AtlasPackage {
    pub matrix: Vec<u8>,
    pub model: Vec<u8>,
    pub manifest: serde_json::Value,
    pub warnings: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the package. The model is trained on the matrix as a browser reads it back (quantised
/// values included), so instant annotation and fine-tuning start from the same data.
pub async fn build_atlas<O: Observer>(reference: &AnnData, options: &AtlasOptions, device: &Device, observer: &mut O) -> Result<AtlasPackage> {
    if options.id.is_empty() || !options.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(SclabelError::InvalidOption { option: "id".into(), reason: format!("'{}': use letters, digits, '-', '_' or '.'", options.id) });
    }
    let (x, genes) = reference.matrix(options.use_raw)?;
    let (x, normalization) = prepare_input_with(x, genes, &*reference.value_stats(options.use_raw)?, options.normalize, "reference")?;
    let matrix =
        AtlasMatrix::from_reference(reference, &x, genes, &options.label_key, options.domain_key.as_deref(), options.max_cells_per_class, options.seed)?;
    let matrix_bytes = matrix.to_bytes(options.values)?;
    let stored = AtlasMatrix::from_bytes(&matrix_bytes)?;
    let adata = stored.to_anndata();
    let mut config = options.config.clone().unwrap_or_else(|| serde_json::json!({}));
    if let Some(map) = config.as_object_mut() {
        map.entry("seed").or_insert(options.seed.into());
    }
    let transfer = TransferOptions {
        label_key: options.label_key.clone(),
        domain_key: options.domain_key.clone(),
        preset: options.preset.clone(),
        config: Some(config),
        ..Default::default()
    };
    let (mut model, warnings) = train_transfer(&adata, None, &transfer, device, observer).await?;
    model.provenance.details.insert("atlas".into(), options.id.clone());
    let model_bytes = model.to_bytes().await?;
    let counts = stored.class_counts();
    let classes: Vec<serde_json::Value> =
        stored.classes.iter().zip(&counts).map(|(c, n)| serde_json::json!({ "label": c, "cells": n, "ontology_id": options.ontology.get(c) })).collect();
    let unknown: Vec<&String> = options.ontology.keys().filter(|k| !stored.classes.contains(k)).collect();
    let mut warnings = warnings;
    if !unknown.is_empty() {
        warnings.push(format!("ontology IDs given for labels the atlas doesn't have: {unknown:?}"));
    }
    let metrics = model.metrics.as_ref().map(|m| {
        serde_json::json!({
            "mode": m.mode, "best_epoch": m.best_epoch, "final_accuracy": m.final_accuracy, "n_train": m.n_train, "epochs_run": m.epochs.len(),
        })
    });
    let manifest = serde_json::json!({
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "id": options.id, "name": options.name, "species": options.species, "tissue": options.tissue,
        "license": options.license, "source": options.source,
        "label_key": options.label_key, "domain_key": options.domain_key, "domains": stored.domains,
        "classes": classes,
        "n_cells": stored.x.n_rows, "n_genes": stored.genes.len(), "nnz": stored.x.data.len(),
        "subsample_per_class": options.max_cells_per_class,
        "input": "ln(CPM+1)", "source_normalization": normalization.description,
        "values": options.values,
        "training": { "preset": options.preset, "metrics": metrics },
        "files": {
            "matrix": { "path": MATRIX_FILE, "bytes": matrix_bytes.len(), "sha256": sha256_hex(&matrix_bytes),
                        "format": super::matrix::FORMAT, "format_version": super::matrix::FORMAT_VERSION },
            "model": { "path": MODEL_FILE, "bytes": model_bytes.len(), "sha256": sha256_hex(&model_bytes),
                       "bundle_format_version": crate::scnym::bundle::FORMAT_VERSION },
        },
        "built_with": format!("sclabel {}", env!("CARGO_PKG_VERSION")),
    });
    Ok(AtlasPackage { matrix: matrix_bytes, model: model_bytes, manifest, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{synthetic_counts, SyntheticSpec};
    use crate::scnym::bundle::ScnymModel;
    use crate::scnym::predict::PredictOptions;
    use crate::train::progress::Silent;

    #[test]
    fn atlas_build_ships_a_matrix_and_a_model_that_agree() {
        let device = crate::backend::cpu(crate::backend::BackendRequest::Cpu, "test").unwrap().device;
        let adata = synthetic_counts(&SyntheticSpec { n_cells: 400, n_genes: 120, n_classes: 3, seed: 11, ..Default::default() });
        let options = AtlasOptions {
            id: "synthetic-test".into(),
            normalize: true,
            domain_key: Some("batch".into()),
            config: Some(serde_json::json!({ "n_epochs": 6 })),
            ontology: [("type_0".to_string(), "CL:0000000".to_string())].into_iter().collect(),
            ..Default::default()
        };
        let package = crate::block_on(build_atlas(&adata, &options, &device, &mut Silent)).unwrap();
        let m = &package.manifest;
        assert_eq!(m["format"], MANIFEST_FORMAT);
        assert_eq!(m["n_cells"], 400);
        assert_eq!(m["classes"][0]["ontology_id"], "CL:0000000");
        assert_eq!(m["files"]["matrix"]["sha256"], sha256_hex(&package.matrix));
        let matrix = AtlasMatrix::from_bytes(&package.matrix).unwrap();
        let model = ScnymModel::from_bytes(&package.model, &device).unwrap();
        assert_eq!(model.genes, matrix.genes);
        assert_eq!(model.classes, matrix.classes);
        // The shipped model labels the shipped matrix well (synthetic classes are separable).
        let adata = matrix.to_anndata();
        let (pred, _) = crate::block_on(crate::scnym::api::predict_adata(
            &model,
            &adata,
            &PredictOptions { normalize: false, use_raw: false, ..Default::default() },
            &device,
            &mut Silent,
        ))
        .unwrap();
        let agree = pred.labels.iter().zip(&matrix.labels).filter(|(p, &c)| matrix.classes[c as usize] == **p).count();
        assert!(agree as f64 / 400.0 > 0.9, "{agree} of 400");
        let bad = AtlasOptions { id: "no spaces".into(), ..options };
        assert!(crate::block_on(build_atlas(&adata, &bad, &device, &mut Silent)).is_err());
    }
}
