//! scNym natively on the CPU backend: fidelity with the reference scNym (an imported model must
//! reproduce scNym's own probabilities and embedding), label transfer across Symphony's
//! chemistries, bundles, input errors. Tests that need ../shared say so and pass when it is absent.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sclabel::backend::{cpu, BackendRequest, Executor};
use sclabel::block_on;
use sclabel::data::anndata::AnnData;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::io::h5ad::read_h5ad;
use sclabel::scnym::api::{predict_adata, train_transfer, TransferOptions};
use sclabel::scnym::bundle::ScnymModel;
use sclabel::scnym::predict::PredictOptions;
use sclabel::train::progress::Silent;
use sclabel::SclabelError;

/// A file of `../shared` (tests using it are ignored without it; with it, a missing file fails).
fn shared(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel);
    assert!(p.exists(), "../shared/{rel} not found");
    p
}

fn load(path: &Path) -> AnnData {
    read_h5ad(&std::fs::read(path).unwrap(), &path.display().to_string()).unwrap()
}

/// Rows of the cells whose `column` equals / differs from `value`.
fn rows_where(ad: &AnnData, column: &str, value: &str, equal: bool) -> Vec<usize> {
    let v = ad.obs.get(column).unwrap().to_strings();
    (0..ad.n_obs()).filter(|&i| (v[i].as_deref() == Some(value)) == equal).collect()
}

fn subset(ad: &AnnData, rows: &[usize]) -> AnnData {
    ad.select_obs(rows).unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, HashMap<String, Vec<f32>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').skip(1).map(String::from).collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.split(',');
            let name = it.next().unwrap().to_string();
            (name, it.map(|v| v.parse::<f32>().unwrap()).collect())
        })
        .collect();
    (header, rows)
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn imported_scnym_model_reproduces_scnym_probabilities_and_embedding() {
    use sclabel::scnym::import::{import_scnym, parse_list};
    let (dir, data) = (shared("reference-outputs/scnym-symphony-3pv1"), shared("data/pbmc_symphony_3chemistries.h5ad"));
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let list = |f: &str| parse_list(&std::fs::read_to_string(dir.join(f)).unwrap());
    let weights = std::fs::read(dir.join("00_best_model_weights.pkl")).unwrap();
    let model = import_scnym(&weights, "00_best_model_weights.pkl", list("gene_names.txt"), list("class_names.txt"), &device).unwrap();
    assert_eq!(model.arch.n_genes, 1767);
    assert_eq!(model.classes.len(), 9);
    let ad = load(&data);
    let query = subset(&ad, &rows_where(&ad, "donor", "3pv1", true));
    assert_eq!(query.n_obs(), 290);
    let (pred, report) =
        block_on(predict_adata(&model, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
    assert_eq!(report.overlap.shared, 1767);
    let (classes, probs) = read_csv(&dir.join("scnym_probabilities.csv"));
    assert_eq!(classes, model.classes);
    let (_, emb) = read_csv(&dir.join("scnym_embedding.csv"));
    let embedding = pred.embedding.as_ref().unwrap();
    let (mut max_p, mut max_e) = (0f32, 0f32);
    for (i, cell) in query.obs_names.iter().enumerate() {
        let want = &probs[cell];
        for k in 0..9 {
            max_p = max_p.max((pred.probabilities[i * 9 + k] - want[k]).abs());
        }
        let want = &emb[cell];
        for k in 0..256 {
            let (a, b) = (embedding[i * 256 + k], want[k]);
            max_e = max_e.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    eprintln!("max |Δp| = {max_p:e}, max relative |Δembedding| = {max_e:e}");
    assert!(max_p < 1e-5, "probabilities differ from scNym's by {max_p}");
    assert!(max_e < 1e-4, "embedding differs from scNym's by {max_e}");
    // The same model through a bundle round trip predicts identically; keep the bundle for the
    // browser test.
    let bytes = block_on(model.to_bytes()).unwrap();
    let back = ScnymModel::from_bytes(&bytes, &device).unwrap();
    let (again, _) =
        block_on(predict_adata(&back, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
    assert_eq!(again.probabilities, pred.probabilities);
    assert_eq!(back.genes, model.genes);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(tmp.join("scnym_3pv1.safetensors"), &bytes).unwrap();

    // Streamed from the file a block of cells at a time (the CLI's predict): the same prediction
    // as from the data set held whole.
    use sclabel::io::h5ad::{open_h5ad_rows, ReadSeekSource};
    use sclabel::scnym::api::predict_h5ad_rows;
    let rows = open_h5ad_rows(ReadSeekSource::new(std::fs::File::open(&data).unwrap()).unwrap(), "symphony", false).unwrap();
    let (streamed, report) =
        block_on(predict_h5ad_rows(&model, &rows, &PredictOptions { normalize: true, ..Default::default() }, &device, &mut Silent)).unwrap();
    let (held, _) =
        block_on(predict_adata(&model, &ad, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
    assert_eq!(report.overlap.shared, 1767);
    assert_eq!(streamed.labels, held.labels);
    let worst = streamed.probabilities.iter().zip(&held.probabilities).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-6, "streamed prediction differs by {worst}");
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn symphony_two_chemistries_label_the_third() {
    let data = shared("data/pbmc_symphony_3chemistries.h5ad");
    let ad = load(&data);
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let reference = subset(&ad, &rows_where(&ad, "donor", "3pv1", false));
    let query = subset(&ad, &rows_where(&ad, "donor", "3pv1", true));
    let options = TransferOptions {
        label_key: "cell_type".into(),
        domain_key: Some("donor".into()),
        preset: "no_new_identity".into(),
        normalize: true,
        ..Default::default()
    };
    let (model, warnings) = block_on(train_transfer(&reference, Some(&query), &options, &device, &mut Silent)).unwrap();
    // HSC has 3 cells, one of them outside 3pv1: the user is told.
    assert!(warnings.iter().any(|w| w.contains("'HSC' has a single labelled cell")), "{warnings:?}");
    let metrics = model.metrics.as_ref().unwrap();
    assert_eq!(metrics.mode, "mixmatch+dan");
    let (pred, _) =
        block_on(predict_adata(&model, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
    let truth = query.obs.get("cell_type").unwrap().to_strings();
    let hits = pred.labels.iter().zip(&truth).filter(|(p, t)| Some(p.as_str()) == t.as_deref()).count();
    let acc = hits as f32 / query.n_obs() as f32;
    eprintln!("3pv1 accuracy {acc:.4}, best epoch {}, held-out accuracy {:?}", metrics.best_epoch, metrics.final_accuracy);
    assert!(acc > 0.85, "accuracy on the held-out chemistry {acc}");
    // The browser test (tests/js/package.test.mjs) runs the same transfer in a worker and compares.
    let tmp = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("native_symphony_3pv1.json"), serde_json::json!({ "accuracy": acc, "cells": query.n_obs() }).to_string()).unwrap();
}

fn small_transfer_options() -> TransferOptions {
    TransferOptions {
        label_key: "cell_type".into(),
        preset: "default".into(),
        normalize: true,
        config: Some(serde_json::json!({"n_epochs": 4, "batch_size": 64, "seed": 5})),
        ..Default::default()
    }
}

fn synthetic_with_unlabeled() -> AnnData {
    use sclabel::data::anndata::Column;
    let mut ad = synthetic_counts(&SyntheticSpec { n_cells: 400, n_genes: 120, n_classes: 3, seed: 11, ..Default::default() });
    let idx = ad.obs.columns.iter().position(|(n, _)| n == "cell_type").unwrap();
    let mut labels: Vec<String> = ad.obs.columns[idx].1.to_strings().into_iter().map(Option::unwrap).collect();
    labels.iter_mut().skip(300).for_each(|l| *l = "Unlabeled".into());
    ad.obs.columns[idx].1 = Column::Strings(labels);
    ad
}

#[test]
fn synthetic_transfer_is_deterministic_and_bundles_round_trip() {
    let ad = synthetic_with_unlabeled();
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let options = small_transfer_options();
    let (a, _) = block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap();
    let (b, _) = block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap();
    let losses = |m: &ScnymModel| m.metrics.as_ref().unwrap().epochs.iter().map(|e| (e.loss, e.val_loss)).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b), "same seed, same training");
    assert_eq!(a.metrics.as_ref().unwrap().mode, "mixmatch+dan");
    let opts = PredictOptions { normalize: true, unassigned_below: Some(0.999), ..Default::default() };
    let (pa, _) = block_on(predict_adata(&a, &ad, &opts, &device, &mut Silent)).unwrap();
    assert!(pa.labels.iter().any(|l| l == "Unassigned"));
    assert!(pa.probabilities.iter().all(|p| p.is_finite()));
    let bytes = block_on(a.to_bytes()).unwrap();
    let back = ScnymModel::from_bytes(&bytes, &device).unwrap();
    assert_eq!(back.config, a.config);
    assert_eq!(back.metrics, a.metrics);
    let (pb, _) = block_on(predict_adata(&back, &ad, &opts, &device, &mut Silent)).unwrap();
    assert_eq!(pa, pb);
    // One flipped bit in the weights (the last bytes are tensor data) is refused, not predicted with.
    let mut damaged = bytes.clone();
    let at = damaged.len() - 100;
    damaged[at] ^= 0x10;
    let e = ScnymModel::from_bytes(&damaged, &device).expect_err("a damaged bundle is refused");
    assert_eq!(e.code(), "invalid_file");
    assert!(e.to_string().contains("SHA-256") && e.to_string().contains("damaged"), "{e}");
    // A bundle whose metadata says it expects another input scale is refused, not fed ln(CPM+1).
    let cp10k = {
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        meta.insert("input".into(), r#"{"transform":"log1p_cp10k","target_total":10000.0}"#.into());
        safetensors::serialize(st.tensors(), Some(meta)).unwrap()
    };
    let e = ScnymModel::from_bytes(&cp10k, &device).expect_err("an input scale other than ln(CPM+1) is refused");
    assert!(e.code() == "invalid_file" && e.to_string().contains("log1p_cp10k"), "{e}");
    // Cells with no value in the model's genes are predicted, and named in a warning.
    let (_, report) = block_on(predict_adata(&a, &ad, &opts, &device, &mut Silent)).unwrap();
    assert!(report.warnings.iter().all(|w| !w.contains("no value in any")), "{:?}", report.warnings);
    let mut emptied = ad.clone();
    let keep: Vec<usize> = (0..ad.n_obs()).collect();
    emptied.x = {
        let mut x = ad.x.select_rows(&keep);
        for r in [3usize, 7] {
            let (a0, b0) = (x.indptr[r] as usize, x.indptr[r + 1] as usize);
            x.data[a0..b0].iter_mut().for_each(|v| *v = 0.0);
        }
        sclabel::data::matrix::CsrMatrix::from_dense(x.n_rows, x.n_cols, &{
            let mut d = Vec::new();
            x.densify_rows_into(&keep, &mut d);
            d
        })
        .unwrap()
    };
    emptied.x_stats = None;
    let (pe, report) = block_on(predict_adata(&a, &emptied, &opts, &device, &mut Silent)).unwrap();
    assert_eq!(pe.labels.len(), ad.n_obs());
    let w = report.warnings.iter().find(|w| w.contains("no value in any of the model's genes")).expect("a warning naming the empty cells");
    assert!(w.starts_with(&format!("2 of {} cells", ad.n_obs())) && w.contains(&format!("'{}'", ad.obs_names[3])), "{w}");
    // For the wasm tests: the same training must give these probabilities there too.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(tmp.join("native_scnym_probabilities.json"), serde_json::to_string(&pa.probabilities).unwrap()).unwrap();
}

/// The whole step on the host (CPU backends: sparse first layer, gemm, host Adadelta) is the same
/// training as burn's autodiff, loss term by loss term: MixMatch + DAN at the defaults and with both
/// ramps at full weight from epoch 1 (so a wrong sign or scale in the small terms shows), the
/// discovery preset's confidence threshold with class weights, the CE criterion and augmented
/// pseudolabels, another depth, supervised mode, and supervised + adversary over two batches.
#[test]
fn host_network_follows_burn_training() {
    use sclabel::data::anndata::Column;
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let semi = synthetic_with_unlabeled();
    let mut batches = synthetic_counts(&SyntheticSpec { n_cells: 300, n_genes: 120, n_classes: 3, seed: 12, ..Default::default() });
    batches.obs.columns.push(("batch".into(), Column::Strings((0..300).map(|i| format!("b{}", i % 2)).collect())));
    let full = serde_json::json!({"ssl_kwargs": {"ramp_epochs": 1, "dan_ramp_epochs": 1, "dan_max_weight": 1.0}, "weight_decay": 0.0});
    let discovery = serde_json::json!({"weighted_classes": true, "ssl_kwargs": {"unsup_criterion": "ce", "pseudolabel_min_confidence": 0.5,
        "dan_use_conf_pseudolabels": true, "dan_scale_loss_pseudoconf": true, "n_augmentations": 2, "augment_pseudolabels": true}});
    let variants = [
        ("default", &semi, None, serde_json::json!({})),
        ("default", &semi, None, full),
        ("new_identity_discovery", &semi, None, discovery),
        ("default", &semi, None, serde_json::json!({"model_kwargs": {"n_layers": 3, "n_hidden_init": 48, "n_hidden": 32}})),
        ("no_ssl", &semi, None, serde_json::json!({})),
        ("default", &batches, Some("batch"), serde_json::json!({})),
    ];
    for (k, (preset, ad, domain, extra)) in variants.into_iter().enumerate() {
        let run = |host: bool| {
            let mut config = serde_json::json!({"n_epochs": 4, "batch_size": 64, "seed": 5, "host_network": host});
            config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let options = TransferOptions { preset: preset.into(), domain_key: domain.map(Into::into), config: Some(config), ..small_transfer_options() };
            let (m, _) = block_on(train_transfer(ad, None, &options, &device, &mut Silent)).unwrap();
            let (p, _) =
                block_on(predict_adata(&m, ad, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
            let metrics = m.metrics.unwrap();
            assert_eq!(metrics.executor, Some(if host { Executor::Host } else { Executor::Burn }), "variant {k}");
            assert_eq!(p.executor, Executor::Host, "prediction on the CPU runs on the host");
            (metrics.mode, metrics.epochs, p.probabilities)
        };
        let ((mode, host_epochs, host_p), (_, burn_epochs, burn_p)) = (run(true), run(false));
        for (h, b) in host_epochs.iter().zip(&burn_epochs) {
            for (name, x, y) in
                [("loss", h.loss, b.loss), ("sup", h.sup_loss, b.sup_loss), ("unsup", h.unsup_loss, b.unsup_loss), ("dan", h.dan_loss, b.dan_loss)]
            {
                assert!((x - y).abs() <= 1e-4 * y.abs().max(1e-2), "variant {k} ({mode}), epoch {}: {name} {x} vs {y}", h.epoch);
            }
        }
        let max = host_p.iter().zip(&burn_p).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("variant {k} ({preset}, {mode}): host network vs burn, max |Δp| = {max:.2e}");
        // (float-level differences can flip a ReLU or dropout boundary and grow over the steps; a
        // wrong gradient shows in the loss terms above and far beyond this)
        assert!(max < 1e-3, "variant {k}: probabilities differ by {max}");
        assert_ne!(host_epochs[3].loss, host_epochs[0].loss, "it trained");
        if k == 5 {
            assert_eq!(mode, "supervised+dan");
            assert!(host_epochs.iter().all(|e| e.dan_loss > 0.0));
        }
    }
    // The switch's earlier name is still read.
    let options = TransferOptions { config: Some(serde_json::json!({"n_epochs": 1, "sparse_first_layer": false})), ..small_transfer_options() };
    block_on(train_transfer(&semi, None, &options, &device, &mut Silent)).unwrap();
}

#[test]
fn supervised_presets_and_no_ssl_are_really_supervised() {
    let ad = synthetic_with_unlabeled();
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let options = TransferOptions { preset: "no_ssl".into(), ..small_transfer_options() };
    let (m, _) = block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap();
    assert_eq!(m.metrics.as_ref().unwrap().mode, "supervised");
    let options = TransferOptions {
        config: Some(
            serde_json::json!({"n_epochs": 2, "optimizer_name": "adamw", "weighted_classes": true, "unsup_mean_teacher": true, "model_kwargs": {"residual": true, "n_layers": 3, "init_dropout": 0.1}}),
        ),
        ..small_transfer_options()
    };
    let (m, _) = block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap();
    assert_eq!(m.arch.n_norms(), 2 + 2 * 3);
    let bytes = block_on(m.to_bytes()).unwrap();
    ScnymModel::from_bytes(&bytes, &device).unwrap();
}

#[test]
fn bad_inputs_give_clear_errors() {
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let ad = synthetic_with_unlabeled();
    // raw counts without normalize
    let options = TransferOptions { normalize: false, ..small_transfer_options() };
    let e = block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap_err();
    assert!(e.to_string().contains("raw counts") && e.to_string().contains("normalize"), "{e}");
    // unknown config key, unknown preset
    let options = TransferOptions { config: Some(serde_json::json!({"n_epoch": 3})), ..small_transfer_options() };
    assert!(block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap_err().to_string().contains("n_epoch"));
    let options = TransferOptions { preset: "fast".into(), ..small_transfer_options() };
    assert!(matches!(block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap_err(), SclabelError::InvalidOption { .. }));
    // missing label column
    let options = TransferOptions { label_key: "celltype".into(), ..small_transfer_options() };
    assert!(matches!(block_on(train_transfer(&ad, None, &options, &device, &mut Silent)).unwrap_err(), SclabelError::ColumnNotFound { .. }));
    // duplicate genes
    let mut dup = synthetic_with_unlabeled();
    dup.var_names[1] = dup.var_names[0].clone();
    let e = block_on(train_transfer(&dup, None, &small_transfer_options(), &device, &mut Silent)).unwrap_err();
    assert!(e.to_string().contains("duplicate gene"), "{e}");
    // a bundle that isn't one
    assert!(ScnymModel::from_bytes(b"not a bundle", &device).is_err());
    // prediction on data sharing no gene with the model
    let (m, _) = block_on(train_transfer(
        &ad,
        None,
        &TransferOptions { config: Some(serde_json::json!({"n_epochs": 1})), ..small_transfer_options() },
        &device,
        &mut Silent,
    ))
    .unwrap();
    let mut other = synthetic_with_unlabeled();
    other.var_names.iter_mut().for_each(|g| g.insert_str(0, "X_"));
    let e = block_on(predict_adata(&m, &other, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap_err();
    assert!(matches!(e, SclabelError::Genes { .. }), "{e}");
}

/// A prediction split by rows (the browser's parallel workers: prepared once, each share run on
/// its own, the outputs joined) is the prediction of the whole, value for value, when the shares
/// start at whole batches (as the whole run's batches: the network's kernels round differently
/// for a row at another place in its batch, by up to 6e-7 in the embedding).
#[test]
fn a_prediction_split_by_rows_equals_the_whole() {
    use sclabel::scnym::api::prepare_prediction;
    use sclabel::scnym::predict::{predict_outputs, PredictionParts};
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let data = synthetic_counts(&SyntheticSpec { n_cells: 900, n_genes: 80, n_classes: 3, seed: 4, ..SyntheticSpec::default() });
    let options = TransferOptions {
        label_key: "cell_type".into(),
        normalize: true,
        config: Some(serde_json::json!({ "n_epochs": 3, "batch_size": 64 })),
        ..Default::default()
    };
    let (model, _) = block_on(train_transfer(&data, None, &options, &device, &mut Silent)).unwrap();
    let predict = PredictOptions { normalize: true, batch_size: 100, unassigned_below: Some(0.6), ..Default::default() };
    let (whole, whole_report) = block_on(predict_adata(&model, &data, &predict, &device, &mut Silent)).unwrap();
    let prepared = prepare_prediction(&model, &data, &predict).unwrap();
    assert_eq!(prepared.report, whole_report);
    assert!(prepared.rescale.is_some(), "counts are rescaled row by row, in each share");
    let mut joined = PredictionParts::new(&model, &predict, prepared.x.n_rows).unwrap();
    for range in [0..300, 300..400, 400..900] {
        let rows: Vec<usize> = range.collect();
        let share = prepared.select_rows(&rows).into_model_input();
        let share = block_on(predict_outputs(&model, &share, &predict, &device, &mut Silent)).unwrap();
        joined.add_outputs(&model, share).unwrap();
    }
    let joined = joined.finish(&model).unwrap();
    assert_eq!(joined, whole);
    assert_eq!(joined.executor, Executor::Host);
    // Outputs of the wrong size are refused, not joined.
    let mut parts = PredictionParts::new(&model, &predict, 10).unwrap();
    let share = prepared.select_rows(&(0..11).collect::<Vec<_>>()).into_model_input();
    let share = block_on(predict_outputs(&model, &share, &predict, &device, &mut Silent)).unwrap();
    assert!(parts.add_outputs(&model, share).is_err());
}
