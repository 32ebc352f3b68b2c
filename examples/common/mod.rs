//! What the benchmark examples share: reading ../shared/data, label-transfer scores.
use sclabel::data::anndata::AnnData;
use sclabel::io::h5ad::read_h5ad;

/// A file of ../shared/data (benchmarks need it; a clear panic says so when it is missing).
pub fn load(file: &str) -> AnnData {
    let path = format!("{}/../shared/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (benchmarks need ../shared/data)"));
    read_h5ad(&bytes, file).unwrap()
}

/// Accuracy, Cohen's kappa and macro-F1 (over labels seen in truth or prediction, as sklearn).
pub fn scores(truth: &[String], pred: &[String]) -> (f64, f64, f64) {
    let mut labels: Vec<&String> = truth.iter().chain(pred).collect();
    labels.sort();
    labels.dedup();
    let idx = |s: &String| labels.binary_search(&s).unwrap();
    let k = labels.len();
    let mut cm = vec![vec![0f64; k]; k];
    truth.iter().zip(pred).for_each(|(t, p)| cm[idx(t)][idx(p)] += 1.0);
    let n = truth.len() as f64;
    let po = (0..k).map(|i| cm[i][i]).sum::<f64>() / n;
    let pe = (0..k).map(|i| cm[i].iter().sum::<f64>() * (0..k).map(|r| cm[r][i]).sum::<f64>()).sum::<f64>() / (n * n);
    let f1 = (0..k)
        .map(|i| {
            let tp = cm[i][i];
            let (row, col) = (cm[i].iter().sum::<f64>(), (0..k).map(|r| cm[r][i]).sum::<f64>());
            if row + col == 0.0 {
                0.0
            } else {
                2.0 * tp / (row + col)
            }
        })
        .sum::<f64>()
        / k as f64;
    (po, (po - pe) / (1.0 - pe), f1)
}
