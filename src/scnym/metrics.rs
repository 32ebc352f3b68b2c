//! What a training run records, per epoch and overall. A data type of its own, below both the
//! training loop that fills it and the bundle format that stores it (so the file format does not
//! depend on the training loop).
use serde::{Deserialize, Serialize};

use crate::backend::Executor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f32,
    pub sup_loss: f32,
    pub unsup_loss: f32,
    pub dan_loss: f32,
    pub unsup_weight: f64,
    pub dan_weight: f64,
    /// Fraction of unlabelled cells whose pseudolabel passed the confidence threshold.
    pub confident_fraction: f32,
    pub val_loss: Option<f32>,
    pub val_accuracy: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// "supervised", "supervised+dan" or "mixmatch" (+ "+dan").
    pub mode: String,
    pub n_train: usize,
    pub n_model_selection: usize,
    pub n_holdout: usize,
    pub n_unlabeled: usize,
    pub epochs: Vec<EpochRecord>,
    /// Epoch whose weights were kept (lowest model-selection loss from min_epochs on), or the last.
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// Accuracy and mean cross-entropy on the held-out split (scNym's final_acc / final_loss).
    pub final_accuracy: Option<f32>,
    pub final_loss: Option<f32>,
    /// Which executor trained (see `backend::Executor`); absent in bundles from before 2026-12-04.
    #[serde(default)]
    pub executor: Option<Executor>,
}
