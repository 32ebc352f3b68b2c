//! The annotation audit natively on the CPU backend: it finds flipped labels, the host-side sparse
//! first layer follows the same dynamics as the dense one, and the numbers the wasm tests compare
//! against are written to target/tmp.
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sclabel::audit::api::{audit_adata, AuditOptions, CutoffRule};
use sclabel::audit::categories::{auroc, Category};
use sclabel::audit::dynamics::follow_training_dynamics;
use sclabel::backend::{cpu, BackendRequest, Executor};
use sclabel::block_on;
use sclabel::data::anndata::Column;
use sclabel::data::labels::encode_labels;
use sclabel::data::normalize::{to_log_normalized, TargetScale};
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::train::classifier::TrainOptions;
use sclabel::train::progress::Silent;
use sclabel::SclabelError;

/// The scenario tests/js/audit_cases.mjs runs in wasm (same data, same options).
fn small_audit() -> (SyntheticSpec, AuditOptions) {
    let spec = SyntheticSpec { n_cells: 300, n_genes: 100, n_classes: 3, seed: 21, ..Default::default() };
    let options = AuditOptions { train: TrainOptions { n_epochs: 6, batch_size: 64, lr: 0.01, seed: 4, ..TrainOptions::default() }, ..AuditOptions::default() };
    (spec, options)
}

#[test]
fn audit_finds_flipped_labels_on_synthetic_blobs() {
    let data = synthetic_counts(&SyntheticSpec { n_cells: 800, n_genes: 200, n_classes: 4, seed: 9, ..Default::default() });
    let truth: Vec<String> = data.obs.get("cell_type").unwrap().to_strings().into_iter().map(Option::unwrap).collect();
    let classes = {
        let mut c = truth.clone();
        c.sort();
        c.dedup();
        c
    };
    // Flip 10% of the labels to another class.
    let mut rng = StdRng::seed_from_u64(77);
    let mut given = truth.clone();
    let mut flipped = vec![false; truth.len()];
    for i in 0..truth.len() {
        if rng.random::<f64>() < 0.1 {
            let others: Vec<&String> = classes.iter().filter(|c| **c != truth[i]).collect();
            given[i] = others[rng.random_range(0..others.len())].clone();
            flipped[i] = true;
        }
    }
    let noisy = data.with_obs_column("cell_type", Column::Strings(given)).unwrap();
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let options = AuditOptions { train: TrainOptions { n_epochs: 30, lr: 0.01, seed: 1, ..TrainOptions::default() }, ..AuditOptions::default() };
    let r = block_on(audit_adata(&noisy, &options, &device, &mut Silent)).unwrap();
    assert_eq!(r.cells.len(), 800);
    let score: Vec<f64> = r.dynamics.confidence.iter().map(|&c| 1.0 - c as f64).collect();
    let a = auroc(&score, &flipped).unwrap();
    println!("synthetic blobs, 10% flipped: AUROC {a:.4}; cutoffs {:?}; simulated-noise AUROC {:?}", r.cutoffs, r.noise_run.as_ref().unwrap().auroc);
    assert!(a > 0.9, "AUROC {a}");
    // Hard-to-learn cells are mostly the flipped ones, and re-annotation restores most labels.
    let hard: Vec<usize> = (0..800).filter(|&k| r.categories[k] == Category::HardToLearn).collect();
    let hard_flipped = hard.iter().filter(|&&k| flipped[k]).count();
    assert!(hard_flipped * 2 > hard.len(), "{hard_flipped} of {} hard-to-learn cells were flipped", hard.len());
    let corrected = r.corrected_labels.as_ref().unwrap();
    let fixed = hard.iter().filter(|&&k| flipped[k] && corrected[k] == truth[k]).count();
    assert!(fixed * 10 >= hard_flipped * 8, "re-annotation restored {fixed} of {hard_flipped}");
    assert!(r.gene_scores.as_ref().is_some_and(|g| !g.genes.is_empty()));
}

#[test]
fn host_network_follows_burns_dynamics() {
    let data = synthetic_counts(&SyntheticSpec { n_cells: 400, n_genes: 150, n_classes: 3, seed: 2, ..Default::default() });
    let (x, _) = to_log_normalized(&data.x, &data.var_names, TargetScale::Cp10k).unwrap();
    let labels = encode_labels(data.obs.get("cell_type").unwrap(), "cell_type", &data.obs_names, &[]).unwrap();
    let rows: Vec<usize> = (0..x.n_rows).collect();
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let run = |host| {
        let options = TrainOptions { n_epochs: 8, batch_size: 64, lr: 0.01, seed: 3, host_network: host, ..TrainOptions::default() };
        block_on(follow_training_dynamics(&x, &labels.codes, 3, &rows, &[&labels.codes], &options, &device, &mut Silent)).unwrap()
    };
    let (host, dense) = (run(true), run(false));
    assert_eq!((host.executor, dense.executor), (Executor::Host, Executor::Burn));
    let d = host.dynamics[0].confidence.iter().zip(&dense.dynamics[0].confidence).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("host network vs burn's autodiff path: max |Δconf| = {d:.2e}");
    assert!(d < 1e-4, "max |Δconf| {d}");
    assert_eq!(host.dynamics[0].n_snapshots, 8);
}

#[test]
fn audit_scenario_for_the_wasm_tests_and_two_label_dynamics() {
    let (spec, options) = small_audit();
    let data = synthetic_counts(&spec);
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let r = block_on(audit_adata(&data, &options, &device, &mut Silent)).unwrap();
    let again = block_on(audit_adata(&data, &options, &device, &mut Silent)).unwrap();
    assert_eq!(r.dynamics, again.dynamics, "same seed, same audit");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let json = serde_json::json!({ "conf": r.dynamics.confidence, "var": r.dynamics.variability, "cutoffs": r.cutoffs });
    std::fs::write(dir.join("native_audit.json"), json.to_string()).unwrap();

    // The same labels as the second column: the same trajectory.
    let labels = data.obs.get("cell_type").unwrap().clone();
    let two = data.with_obs_column("alt", labels).unwrap();
    let o = AuditOptions {
        second_label_key: Some("alt".into()),
        cutoffs: CutoffRule::Fixed { confidence: 0.3, variability: 0.2 },
        reannotate: false,
        gene_scores: None,
        ..options.clone()
    };
    let r2 = block_on(audit_adata(&two, &o, &device, &mut Silent)).unwrap();
    assert_eq!(r2.second.as_ref().unwrap(), &r2.dynamics);
    assert_eq!(r2.dynamics, r.dynamics);
    assert!(r2.noise_run.is_none() && r2.corrected_labels.is_none());

    // A second column with a class the first doesn't have is refused by name.
    let strange = Column::Strings((0..data.n_obs()).map(|i| if i == 5 { "Martian".to_string() } else { "type_0".to_string() }).collect());
    let bad = data.with_obs_column("alt", strange).unwrap();
    match block_on(audit_adata(&bad, &AuditOptions { second_label_key: Some("alt".into()), ..options }, &device, &mut Silent)) {
        Err(SclabelError::Labels { reason: m, .. }) => assert!(m.contains("Martian"), "{m}"),
        other => panic!("expected a labels error, got {other:?}"),
    }
}
