//! An atlas package built natively (the core's `build_atlas`, as `sclabel atlas build` runs it) from
//! synthetic cells, written to target/tmp/atlas/ for the JS tests (tests/js/atlas.test.mjs), and read back.
use std::path::Path;

use sclabel::atlas::build::{build_atlas, sha256_hex, AtlasOptions, MATRIX_FILE, MODEL_FILE};
use sclabel::atlas::matrix::AtlasMatrix;
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::scnym::bundle::ScnymModel;
use sclabel::train::progress::Silent;

/// The JS tests make the same cells with `sl.synthetic({ nCells: 400, nGenes: 120, nClasses: 3, seed: 11 })`.
const SPEC: SyntheticSpec = SyntheticSpec { n_cells: 400, n_genes: 120, n_classes: 3, markers_per_class: 10, marker_mean: 6.0, seed: 11 };

#[test]
fn atlas_package_is_written_for_the_js_tests_and_reads_back() {
    assert_eq!((SPEC.markers_per_class, SPEC.marker_mean), (SyntheticSpec::default().markers_per_class, SyntheticSpec::default().marker_mean), "the JS side uses the defaults");
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
