//! CellTypist models natively: a model file written by celltypist (tests/fixtures/celltypist/,
//! from scripts/make-celltypist-fixtures.py) read with the restricted pickle reader, and its
//! predictions on PBMC 3k equal to CellTypist's own (probabilities within 1e-5, labels
//! identical); hostile and broken pickles are refused with a clear error and nothing run.
use std::path::{Path, PathBuf};

use sclabel::celltypist::{predict_adata, CelltypistModel, UNASSIGNED};
use sclabel::io::h5ad::read_h5ad;
use sclabel::SclabelError;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celltypist").join(name)
}

fn model() -> CelltypistModel {
    CelltypistModel::from_pickle(&std::fs::read(fixture("pbmc3k_lr.pkl")).unwrap(), "pbmc3k_lr.pkl").unwrap()
}

#[test]
fn a_celltypist_model_file_reads_without_running_anything() {
    let m = model();
    assert_eq!(m.classifier, "LogisticRegression");
    assert_eq!(m.classes.len(), 10);
    assert_eq!(m.features.len(), 300);
    assert_eq!((m.coef.len(), m.intercept.len(), m.mean.len(), m.scale.len()), (3000, 10, 300, 300));
    assert!(m.with_mean);
    assert!(m.description.iter().any(|(k, v)| k == "number_celltypes" && v == "10"), "{:?}", m.description);
}

/// CellTypist's annotate() on the first 500 cells of the demo's PBMC 3k counts.
#[test]
fn predictions_equal_celltypist_own() {
    let counts = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/data/pbmc3k_counts.h5ad");
    assert!(counts.exists(), "www/data/pbmc3k_counts.h5ad is fetched by scripts/setup.sh (the demo's query)");
    let data = read_h5ad(&std::fs::read(&counts).unwrap(), "pbmc3k_counts.h5ad").unwrap();
    let data = data.select_obs(&(0..500).collect::<Vec<_>>()).unwrap();
    let m = model();
    let (p, overlap) = predict_adata(&m, &data, false, 0.5).unwrap();
    assert_eq!(overlap.shared, 300);
    assert_eq!(p.genes_used, 300);
    let text = std::fs::read_to_string(fixture("pbmc3k_lr.expected.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let classes: Vec<String> = header[4..].iter().map(|h| h.trim_start_matches("p:").to_string()).collect();
    assert_eq!(classes, m.classes);
    let (mut worst, mut rows, mut unassigned) = (0f64, 0, 0);
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[0], data.obs_names[i]);
        assert_eq!(p.predicted_labels[i], f[1], "best match of cell {i}");
        assert_eq!(p.prob_match[i], f[2], "prob match of cell {i}");
        unassigned += usize::from(f[2] == UNASSIGNED);
        worst = worst.max((p.conf_score[i] - f[3].parse::<f64>().unwrap()).abs());
        for (k, v) in f[4..].iter().enumerate() {
            worst = worst.max((p.probability[i * classes.len() + k] - v.parse::<f64>().unwrap()).abs());
        }
        rows += 1;
    }
    assert_eq!(rows, 500);
    assert!(unassigned > 0, "the fixture has cells no type passes 0.5 for");
    assert!(worst < 1e-5, "largest probability difference from CellTypist: {worst}");
}

#[test]
fn hostile_and_broken_pickles_are_refused_by_name() {
    let refused = |bytes: &[u8], needle: &str| match CelltypistModel::from_pickle(bytes, "bad.pkl") {
        Err(SclabelError::InvalidFile { file, reason }) => {
            assert_eq!(file, "bad.pkl");
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected a refusal naming '{needle}', got {other:?}"),
    };
    // os.system("echo pwned") as pickle protocol 2 would run it: GLOBAL, then REDUCE.
    refused(b"\x80\x02cposix\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.", "posix.system");
    // The same through protocol 4's STACK_GLOBAL (builtins.eval).
    refused(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.", "builtins.eval");
    let good = std::fs::read(fixture("pbmc3k_lr.pkl")).unwrap();
    // Truncated anywhere: a clear error, never a panic.
    for cut in [0, 1, 2, 10, good.len() / 3, good.len() / 2, good.len() - 1] {
        assert!(matches!(CelltypistModel::from_pickle(&good[..cut], "bad.pkl"), Err(SclabelError::InvalidFile { .. })), "cut at {cut}");
    }
    // Not a model: a pickled list.
    refused(b"\x80\x04]\x94.", "no 'Model'");
    // A coefficient array of the wrong size: the first float64 array's shape (10, 300) made (10, 299).
    let at = good.windows(5).position(|w| w == b"K\nM,\x01").expect("the coef shape (10, 300) in the fixture");
    let mut wrong = good.clone();
    wrong[at + 2..at + 5].copy_from_slice(b"M+\x01");
    refused(&wrong, "with 3000 values");
}
