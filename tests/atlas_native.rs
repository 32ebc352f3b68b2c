//! An atlas package built natively (the core's `build_atlas`, as `sclabel atlas build` runs it) from
//! synthetic cells, written to target/tmp/atlas/ for the JS tests (tests/js/atlas.test.mjs), and read back.
use std::path::Path;

use sclabel::atlas::build::{build_atlas, sha256_hex, AtlasOptions, MATRIX_FILE, MODEL_FILE};
use sclabel::atlas::matrix::AtlasMatrix;
use sclabel::atlas::open::AtlasFineTuneOptions;
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::scnym::bundle::ScnymModel;
use sclabel::train::progress::Silent;

/// The JS tests make the same cells with `sl.synthetic({ nCells: 400, nGenes: 120, nClasses: 3, seed: 11 })`.
const SPEC: SyntheticSpec = SyntheticSpec { n_cells: 400, n_genes: 120, n_classes: 3, markers_per_class: 10, marker_mean: 6.0, seed: 11 };

#[test]
fn atlas_package_is_written_for_the_js_tests_and_reads_back() {
    assert_eq!(
        (SPEC.markers_per_class, SPEC.marker_mean),
        (SyntheticSpec::default().markers_per_class, SyntheticSpec::default().marker_mean),
        "the JS side uses the defaults"
    );
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let adata = synthetic_counts(&SPEC);
    let options = AtlasOptions {
        id: "synthetic-test".into(),
        name: Some("Synthetic test atlas".into()),
        license: Some("CC0 (generated)".into()),
        normalize: true,
        domain_key: Some("batch".into()),
        config: Some(serde_json::json!({ "n_epochs": 8 })),
        ..Default::default()
    };
    let package = block_on(build_atlas(&adata, &options, &device, &mut Silent)).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/atlas");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(MATRIX_FILE), &package.matrix).unwrap();
    std::fs::write(dir.join(MODEL_FILE), &package.model).unwrap();
    std::fs::write(dir.join("atlas.json"), serde_json::to_string_pretty(&package.manifest).unwrap()).unwrap();

    let matrix = AtlasMatrix::from_bytes(&std::fs::read(dir.join(MATRIX_FILE)).unwrap()).unwrap();
    let model = ScnymModel::from_bytes(&std::fs::read(dir.join(MODEL_FILE)).unwrap(), &device).unwrap();
    assert_eq!(matrix.x.n_rows, 400);
    assert_eq!(model.genes, matrix.genes);
    assert_eq!(package.manifest["files"]["model"]["sha256"], sha256_hex(&package.model));
    assert_eq!(package.manifest["classes"].as_array().unwrap().len(), 3);
}

/// Fine-tuning (scNym's atlas → target path) from a package opened the way the CLI opens one: the
/// pretrained weights are really the starting point (with a vanishing learning rate the fine-tuned
/// model still labels like the atlas model, a model from scratch does not), a query with other
/// genes is matched by name, and a damaged package is refused before anything is parsed.
#[test]
fn fine_tuning_starts_from_the_atlas_model() {
    use sclabel::atlas::open::open_atlas;
    use sclabel::data::align::align_genes;
    use sclabel::scnym::api::{fine_tune, predict_adata, train_transfer};
    use sclabel::scnym::predict::PredictOptions;
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let adata = synthetic_counts(&SPEC);
    let options = AtlasOptions { id: "fine-tune-test".into(), normalize: true, config: Some(serde_json::json!({ "n_epochs": 8 })), ..Default::default() };
    let package = block_on(build_atlas(&adata, &options, &device, &mut Silent)).unwrap();
    let files = |p: &str| -> sclabel::Result<Vec<u8>> {
        Ok(match p {
            MATRIX_FILE => package.matrix.clone(),
            MODEL_FILE => package.model.clone(),
            other => panic!("unexpected file {other}"),
        })
    };
    let manifest = serde_json::to_vec(&package.manifest).unwrap();
    let atlas = open_atlas(&manifest, files, &device).unwrap();
    let reference = atlas.matrix.to_anndata();

    // A query of other cells (another seed) missing the last 20 genes.
    let full = synthetic_counts(&SyntheticSpec { seed: 12, ..SPEC });
    let keep: Vec<String> = full.var_names[..100].to_vec();
    let (x, _) = align_genes(&full.x, &full.var_names, &keep).unwrap();
    let query = sclabel::data::anndata::AnnData { x, var_names: keep, var_ids: Vec::new(), x_stats: None, ..full.clone() };
    let truth: Vec<String> = full.obs.get("cell_type").unwrap().to_strings().into_iter().map(Option::unwrap).collect();
    let accuracy = |m: &ScnymModel| {
        let (p, _) =
            block_on(predict_adata(m, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent)).unwrap();
        p.labels.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len() as f64
    };
    let opts = |config| AtlasFineTuneOptions { preset: "no_new_identity".into(), config, ..AtlasFineTuneOptions::default() };
    let frozen = Some(serde_json::json!({ "n_epochs": 1, "optimizer_name": "sgd", "lr": 1e-12 }));
    let (tuned, warnings) =
        block_on(fine_tune(&atlas.model, &reference, Some(&query), &atlas.fine_tune_options(&opts(frozen.clone())), &device, &mut Silent)).unwrap();
    assert_eq!(tuned.genes.len(), 100);
    assert_eq!(tuned.classes, atlas.model.classes);
    assert_eq!(tuned.provenance.source, "fine-tuned");
    assert!(warnings.iter().any(|w| w.contains("100 of the 100 training genes") || w.contains("20 of the model's genes")), "{warnings:?}");
    let (scratch, _) = block_on(train_transfer(&reference, Some(&query), &atlas.fine_tune_options(&opts(frozen)), &device, &mut Silent)).unwrap();
    let (a_tuned, a_scratch) = (accuracy(&tuned), accuracy(&scratch));
    assert!(a_tuned > 0.9, "a frozen fine-tune keeps the atlas model's accuracy: {a_tuned}");
    assert!(a_scratch < 0.8, "a frozen model from scratch is untrained: {a_scratch}");
    // Real fine-tuning keeps it high.
    let (tuned, _) = block_on(fine_tune(
        &atlas.model,
        &reference,
        Some(&query),
        &atlas.fine_tune_options(&opts(Some(serde_json::json!({ "n_epochs": 3 })))),
        &device,
        &mut Silent,
    ))
    .unwrap();
    assert!(accuracy(&tuned) > 0.9);

    let mut damaged = package.matrix.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    let e = open_atlas(&manifest, |p| Ok(if p == MATRIX_FILE { damaged.clone() } else { package.model.clone() }), &device).err().unwrap();
    assert!(e.to_string().contains("SHA-256"), "{e}");
    let newer = serde_json::to_vec(&serde_json::json!({ "format": "sclabel-atlas", "format_version": 99 })).unwrap();
    let e = open_atlas(&newer, files, &device).err().unwrap();
    assert_eq!(e.code(), "unsupported_version");
    assert!(e.to_string().contains("format version 99; this sclabel reads up to 1: update sclabel"), "{e}");
}
