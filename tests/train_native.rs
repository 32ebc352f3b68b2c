//! End-to-end training of the plain MLP natively on the CPU backend: synthetic data always, and a
//! real file from ../shared/data when it is there.
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::io::h5ad::read_h5ad;
use sclabel::train::classifier::TrainOptions;
use sclabel::train::holdout::{train_holdout, HoldoutOptions};
use sclabel::train::progress::{FnObserver, Silent};
use sclabel::SclabelError;

/// The options the native-vs-wasm loss-curve check uses (the Node test uses the same).
fn curve_options() -> HoldoutOptions {
    HoldoutOptions { train: TrainOptions { n_epochs: 5, batch_size: 64, seed: 42, ..TrainOptions::default() }, ..HoldoutOptions::default() }
}

#[test]
fn synthetic_training_learns_and_is_deterministic() {
    let data = synthetic_counts(&SyntheticSpec { n_cells: 600, n_genes: 200, n_classes: 4, seed: 3, ..Default::default() });
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let options =
        HoldoutOptions { train: TrainOptions { n_epochs: 30, batch_size: 64, lr: 0.01, seed: 1, ..TrainOptions::default() }, ..HoldoutOptions::default() };
    let a = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap();
    let first = a.history.first().unwrap().loss;
    let last = a.history.last().unwrap().loss;
    assert!(last < 0.5 * first, "loss should fall: {first} → {last}");
    assert!(a.test_accuracy > 0.9, "held-out accuracy {}", a.test_accuracy);
    assert_eq!(a.n_test, 120);
    let b = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap();
    assert_eq!(a.history, b.history, "same seed, same loss curve");

    // Write the reference curve for the wasm (Node) test to compare against.
    let curve = block_on(train_holdout(&data, &curve_options(), &device, &mut Silent)).unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let json = serde_json::to_string(&curve.history.iter().map(|e| e.loss).collect::<Vec<_>>()).unwrap();
    std::fs::write(dir.join("native_loss_curve.json"), json).unwrap();
}

#[test]
fn cancellation_stops_training() {
    let data = synthetic_counts(&SyntheticSpec::default());
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let mut steps = 0;
    let mut observer = FnObserver(|_: &_| {
        steps += 1;
        if steps >= 3 {
            Err(SclabelError::Cancelled)
        } else {
            Ok(())
        }
    });
    let e = block_on(train_holdout(&data, &HoldoutOptions::default(), &device, &mut observer)).unwrap_err();
    assert!(matches!(e, SclabelError::Cancelled));
}

#[test]
fn bad_options_give_clear_errors() {
    let data = synthetic_counts(&SyntheticSpec::default());
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let options = HoldoutOptions { label_key: "celltype".into(), ..HoldoutOptions::default() };
    let e = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap_err();
    assert!(e.to_string().contains("no column 'celltype'") && e.to_string().contains("cell_type"), "{e}");
    let options = HoldoutOptions { train: TrainOptions { n_layers: 7, ..TrainOptions::default() }, ..HoldoutOptions::default() };
    let e = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap_err();
    assert!(e.to_string().contains("n_layers"), "{e}");
    // pbmc3k-sized gene lists would make a G → G/2 MLP of ~500M parameters: refused up front.
    let wide = synthetic_counts(&SyntheticSpec { n_cells: 20, n_genes: 20_000, n_classes: 2, ..Default::default() });
    let e = block_on(train_holdout(&wide, &HoldoutOptions::default(), &device, &mut Silent)).unwrap_err();
    assert!(e.to_string().contains("highly variable genes"), "{e}");
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn real_cells_symphony_holdout() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc_symphony_3chemistries.h5ad");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let data = read_h5ad(&bytes, "pbmc_symphony_3chemistries.h5ad").unwrap();
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let options = HoldoutOptions { train: TrainOptions { n_epochs: 20, lr: 0.01, seed: 0, ..TrainOptions::default() }, ..HoldoutOptions::default() };
    let r = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap();
    eprintln!(
        "symphony holdout: accuracy {:.3} (majority {:.3}), loss {:?}",
        r.test_accuracy,
        r.majority_accuracy,
        r.history.iter().map(|e| e.loss).collect::<Vec<_>>()
    );
    assert!(r.test_accuracy > 0.85, "accuracy {}", r.test_accuracy);
    assert!(r.test_accuracy > r.majority_accuracy + 0.4);
    assert_eq!(r.class_names.len(), 9);
}

/// Native wgpu (Vulkan / Metal / DX12). Built only with `--features wgpu` and run on request,
/// where an adapter exists (a GPU, or lavapipe): `cargo test --features wgpu -- --ignored wgpu`.
#[cfg(feature = "wgpu")]
#[test]
#[ignore = "needs a wgpu adapter: cargo test --features wgpu -- --ignored wgpu"]
fn wgpu_native_trains_synthetic() {
    let device = block_on(sclabel::backend::select(BackendRequest::Webgpu, Ok(()))).expect("a wgpu adapter");
    eprintln!("wgpu adapter: {:?}", device.info.adapter);
    let data = synthetic_counts(&SyntheticSpec { n_cells: 300, n_genes: 64, n_classes: 3, seed: 5, ..Default::default() });
    let options =
        HoldoutOptions { train: TrainOptions { n_epochs: 8, batch_size: 64, lr: 0.05, seed: 1, ..TrainOptions::default() }, ..HoldoutOptions::default() };
    let r = block_on(train_holdout(&data, &options, &device, &mut Silent)).unwrap();
    assert_eq!(r.backend.backend, sclabel::backend::Backend::Webgpu);
    assert!(r.history.last().unwrap().loss < r.history[0].loss);
    assert!(r.test_accuracy > 0.8, "{}", r.test_accuracy);
}
