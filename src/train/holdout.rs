//! Train the plain MLP on a random part of the labelled cells and measure accuracy on the rest:
//! the end-to-end check that data loading, normalisation, training and prediction work together
//! (and the demo's first job).
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::backend::{BackendInfo, ComputeDevice};
use crate::data::anndata::AnnData;
use crate::data::labels::{check_trainable, encode_labels};
use crate::data::normalize::{to_log_normalized_with, NormalizationReport, TargetScale};
use crate::error::{Result, SclabelError};
use crate::train::classifier::{predict_proba, train_mlp, EpochStats, TrainOptions};
use crate::train::progress::Observer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct HoldoutOptions {
    /// obs column with the cell-type labels.
    pub label_key: String,
    /// Cells with these labels are left out entirely (e.g. `unlabeled_QCfail`). Cells labelled
    /// `Unlabeled` are always left out.
    pub exclude_labels: Vec<String>,
    /// Use `.raw` instead of X (for files whose X is scaled).
    pub use_raw: bool,
    /// Log scale the data are converted to before training.
    pub scale: TargetScale,
    /// Fraction of labelled cells held out for testing.
    pub test_fraction: f64,
    pub train: TrainOptions,
}

impl Default for HoldoutOptions {
    fn default() -> Self {
        Self {
            label_key: "cell_type".into(),
            exclude_labels: Vec::new(),
            use_raw: false,
            scale: TargetScale::Cp10k,
            test_fraction: 0.2,
            train: TrainOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct HoldoutReport {
    pub backend: BackendInfo,
    pub normalization: NormalizationReport,
    pub class_names: Vec<String>,
    pub n_genes: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub history: Vec<EpochStats>,
    pub test_accuracy: f32,
    /// Accuracy of always predicting the most frequent training class, on the test cells.
    pub majority_accuracy: f32,
    /// Per test cell: row in the data set, true and predicted class index.
    pub test_rows: Vec<usize>,
    pub test_true: Vec<i32>,
    pub test_predicted: Vec<i32>,
    /// The options after defaults were filled in.
    pub options: HoldoutOptions,
}

pub async fn train_holdout<O: Observer>(adata: &AnnData, options: &HoldoutOptions, device: &ComputeDevice, observer: &mut O) -> Result<HoldoutReport> {
    if !(0.0..1.0).contains(&options.test_fraction) || options.test_fraction.is_nan() {
        return Err(SclabelError::InvalidOption { option: "test_fraction".into(), reason: "must be in [0, 1)".into() });
    }
    // Borrow X (or .raw) rather than copying the data set: normalisation makes the one copy.
    let (source_x, var_names) = adata.matrix(options.use_raw)?;
    let (x, normalization) = to_log_normalized_with(source_x, var_names, &*adata.value_stats(options.use_raw)?, options.scale)?;
    let column = adata.obs.get(&options.label_key)?;
    let labels = encode_labels(column, &options.label_key, &adata.obs_names, &options.exclude_labels)?;
    check_trainable(&labels, &options.label_key)?;

    let mut rows: Vec<usize> = (0..x.n_rows).filter(|&r| labels.codes[r] >= 0).collect();
    rows.shuffle(&mut StdRng::seed_from_u64(options.train.seed ^ 0x5EED_5EED));
    let n_test = ((rows.len() as f64) * options.test_fraction).round() as usize;
    let (test_rows, train_rows) = rows.split_at(n_test);
    let (mut test_rows, mut train_rows) = (test_rows.to_vec(), train_rows.to_vec());
    test_rows.sort_unstable();
    train_rows.sort_unstable();

    let trained = train_mlp(&x, &labels.codes, labels.n_classes(), &train_rows, &options.train, None, &device.device, observer).await?;
    let (model, history) = (trained.model, trained.history);
    let proba = predict_proba(&model, &x, &test_rows, 1024, &device.device, observer).await?;
    let c = labels.n_classes();
    let test_predicted: Vec<i32> =
        proba.chunks(c).map(|p| p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, _)| k as i32).unwrap_or(-1)).collect();
    let test_true: Vec<i32> = test_rows.iter().map(|&r| labels.codes[r]).collect();
    let hits = test_true.iter().zip(&test_predicted).filter(|(a, b)| a == b).count();
    let mut train_counts = vec![0usize; c];
    train_rows.iter().for_each(|&r| train_counts[labels.codes[r] as usize] += 1);
    let majority = (0..c).max_by_key(|&k| train_counts[k]).unwrap_or(0) as i32;
    let majority_hits = test_true.iter().filter(|&&t| t == majority).count();
    let denom = test_rows.len().max(1) as f32;
    Ok(HoldoutReport {
        backend: device.info.clone(),
        normalization,
        class_names: labels.class_names,
        n_genes: x.n_cols,
        n_train: train_rows.len(),
        n_test: test_rows.len(),
        history,
        test_accuracy: hits as f32 / denom,
        majority_accuracy: majority_hits as f32 / denom,
        test_rows,
        test_true,
        test_predicted,
        options: options.clone(),
    })
}
