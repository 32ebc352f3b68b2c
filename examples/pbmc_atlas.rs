//! Worked example of issue 7: a human PBMC atlas from ../shared/data's three PBMC sets (pbmc3k,
//! Symphony's three chemistries, pbmc8k), label vocabularies harmonised by
//! bench/pbmc_atlas/labels.json, evaluated leave-one-dataset-out: build the atlas from two sets
//! exactly as `sclabel atlas build --reference A --reference B --label-map … --domain-key donor`
//! does (the package goes through its bytes and back), then label the third
//!   (a) instantly with the atlas model,
//!   (b) by fine-tuning the atlas model on the atlas matrix + the held-out cells (unlabelled),
//!   (c) by training from scratch on the same atlas matrix + held-out cells (the baseline for b).
//! Scores are over the held-out cells whose harmonised label the atlas has. Writes
//! bench/results/pbmc_atlas.json. Nothing derived from the data is committed.
//!   cargo run --example pbmc_atlas --features ndarray -- [--epochs N] [--fold NAME] [--seed S]
use std::collections::BTreeMap;
use std::time::Instant;

use sclabel::atlas::build::{build_atlas, AtlasOptions};
use sclabel::atlas::combine::{combine_references, ReferencePart, DATASET_COLUMN, LABEL_COLUMN};
use sclabel::atlas::matrix::AtlasMatrix;
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::anndata::AnnData;
use sclabel::scnym::api::{fine_tune, predict_adata, train_transfer, TransferOptions};
use sclabel::scnym::bundle::ScnymModel;
use sclabel::scnym::predict::PredictOptions;
use sclabel::train::progress::Silent;
use serde_json::json;

#[path = "common/mod.rs"]
mod common;
use common::{load, scores};

const SETS: [(&str, &str, Option<&str>); 3] =
    [("pbmc3k", "pbmc3k_raw_labeled.h5ad", None), ("symphony", "pbmc_symphony_3chemistries.h5ad", Some("donor")), ("pbmc8k", "pbmc8k_200hvg.h5ad", None)];

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json_file<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_slice(&std::fs::read(root().join("bench/pbmc_atlas").join(name)).unwrap()).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| args.iter().position(|a| a == k).map(|i| args[i + 1].clone());
    let epochs: usize = arg("--epochs").map_or(100, |v| v.parse().unwrap());
    let only = arg("--fold");
    let seed: u64 = arg("--seed").map_or(0, |v| v.parse().unwrap());
    let device = cpu(BackendRequest::Cpu, "pbmc-atlas").unwrap().device;
    let label_map: BTreeMap<String, Option<String>> = json_file("labels.json");
    let ontology: BTreeMap<String, String> = json_file("ontology.json");
    let data: Vec<AnnData> = SETS.iter().map(|(_, f, _)| load(f)).collect();
    let config = json!({ "n_epochs": epochs, "seed": seed });
    let mut folds = Vec::new();
    for (held, (held_name, _, _)) in SETS.iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != *held_name) {
            continue;
        }
        let parts: Vec<ReferencePart> = SETS
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != held)
            .map(|(i, (name, _, domain))| ReferencePart {
                name: name.to_string(),
                adata: &data[i],
                label_key: "cell_type".into(),
                domain_key: domain.map(String::from),
                use_raw: false,
                normalize: true,
            })
            .collect();
        let t0 = Instant::now();
        let (reference, warnings) = combine_references(&parts, &label_map).unwrap();
        let options = AtlasOptions {
            id: format!("pbmc-without-{held_name}"),
            species: Some("human".into()),
            tissue: Some("blood".into()),
            ontology: ontology.clone(),
            label_key: LABEL_COLUMN.into(),
            domain_key: Some(DATASET_COLUMN.into()),
            config: Some(config.clone()),
            seed,
            ..Default::default()
        };
        let package = block_on(build_atlas(&reference, &options, &device, &mut Silent)).unwrap();
        let build_s = t0.elapsed().as_secs_f64();
        let matrix = AtlasMatrix::from_bytes(&package.matrix).unwrap();
        let atlas_model = ScnymModel::from_bytes(&package.model, &device).unwrap();
        let atlas_ref = matrix.to_anndata();

        // The held-out set: its cells with a harmonised label, all treated as unlabelled.
        let query = &data[held];
        let source: Vec<Option<String>> = query.obs.get("cell_type").unwrap().to_strings();
        let truth_all: Vec<Option<String>> = source.iter().map(|l| l.as_ref().and_then(|l| label_map.get(l).cloned().flatten())).collect();
        let rows: Vec<usize> = (0..query.n_obs()).filter(|&i| truth_all[i].is_some()).collect();
        let query = query.select_obs(&rows).unwrap();
        let truth: Vec<String> = rows.iter().map(|&i| truth_all[i].clone().unwrap()).collect();
        let known: Vec<usize> = (0..truth.len()).filter(|&i| matrix.classes.contains(&truth[i])).collect();
        let score = |model: &ScnymModel| {
            let t = Instant::now();
            let (p, report) =
                block_on(predict_adata(model, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent))
                    .unwrap();
            let predict_s = t.elapsed().as_secs_f64();
            let (acc, kappa, f1) =
                scores(&known.iter().map(|&i| truth[i].clone()).collect::<Vec<_>>(), &known.iter().map(|&i| p.labels[i].clone()).collect::<Vec<_>>());
            json!({ "accuracy": acc, "kappa": kappa, "macro_f1": f1, "genes_shared": report.overlap.shared, "model_genes": report.overlap.model_genes, "predict_s": predict_s })
        };
        let instant = score(&atlas_model);
        let transfer = TransferOptions {
            label_key: LABEL_COLUMN.into(),
            domain_key: Some(DATASET_COLUMN.into()),
            preset: "no_new_identity".into(),
            config: Some(config.clone()),
            normalize: false,
            query_normalize: Some(true),
            ..Default::default()
        };
        let t = Instant::now();
        let (tuned, tune_warnings) = block_on(fine_tune(&atlas_model, &atlas_ref, Some(&query), &transfer, &device, &mut Silent)).unwrap();
        let tune_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (scratch, _) = block_on(train_transfer(&atlas_ref, Some(&query), &transfer, &device, &mut Silent)).unwrap();
        let scratch_s = t.elapsed().as_secs_f64();
        let mut tuned_json = score(&tuned);
        tuned_json["train_s"] = json!(tune_s);
        tuned_json["best_epoch"] = json!(tuned.metrics.as_ref().map(|m| m.best_epoch));
        let mut scratch_json = score(&scratch);
        scratch_json["train_s"] = json!(scratch_s);
        scratch_json["best_epoch"] = json!(scratch.metrics.as_ref().map(|m| m.best_epoch));
        let unknown: BTreeMap<String, usize> = truth.iter().filter(|t| !matrix.classes.contains(t)).fold(BTreeMap::new(), |mut m, t| {
            *m.entry(t.clone()).or_default() += 1;
            m
        });
        let fold = json!({
            "held_out": held_name,
            "atlas": { "from": parts.iter().map(|p| p.name.clone()).collect::<Vec<_>>(), "cells": matrix.x.n_rows, "genes": matrix.genes.len(),
                       "classes": package.manifest["classes"], "matrix_bytes": package.matrix.len(), "model_bytes": package.model.len(),
                       "build_s": build_s, "warnings": warnings },
            "query": { "cells": truth.len(), "scored": known.len(), "labels_not_in_atlas": unknown, "genes": query.n_vars() },
            "instant": instant, "fine_tuned": tuned_json, "scratch": scratch_json, "fine_tune_warnings": tune_warnings,
        });
        println!("{}", serde_json::to_string(&fold).unwrap());
        folds.push(fold);
    }
    let mean = |what: &str, k: &str| folds.iter().map(|f| f[what][k].as_f64().unwrap()).sum::<f64>() / folds.len() as f64;
    let summary = json!({
        "task": "pbmc-atlas leave-one-dataset-out", "n_epochs": epochs, "seed": seed, "label_map": "bench/pbmc_atlas/labels.json",
        "mean_accuracy": { "instant": mean("instant", "accuracy"), "fine_tuned": mean("fine_tuned", "accuracy"), "scratch": mean("scratch", "accuracy") },
        "mean_macro_f1": { "instant": mean("instant", "macro_f1"), "fine_tuned": mean("fine_tuned", "macro_f1"), "scratch": mean("scratch", "macro_f1") },
        "folds": folds,
    });
    println!("{}", serde_json::to_string_pretty(&summary["mean_accuracy"]).unwrap());
    if only.is_none() {
        let out = root().join(if seed == 0 { "bench/results/pbmc_atlas.json".to_string() } else { format!("bench/results/pbmc_atlas_seed{seed}.json") });
        std::fs::write(&out, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
        eprintln!("written to {}", out.display());
    }
}
