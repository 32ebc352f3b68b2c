//! Training dynamics (dataset cartography): train the plain MLP on (cell, annotation) pairs,
//! record the probability of each cell's annotated label before every epoch, and summarise each
//! cell by the mean (confidence) and population standard deviation (variability) of it.
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::nn::mlp::Mlp;
use crate::train::classifier::{train_mlp, EpochStats, Record, TrainOptions};
use crate::train::progress::Observer;

/// Per-cell summary of one label column's trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    /// Mean probability of the label over the snapshots (Annotatability's `conf`).
    pub confidence: Vec<f32>,
    /// Population standard deviation (ddof 0) of it (Annotatability's `var`, despite the name).
    pub variability: Vec<f32>,
    /// Number of snapshots: snapshot 0 is the untrained network, the last is taken before the
    /// final epoch's updates.
    pub n_snapshots: usize,
}

/// Confidence and variability from epoch-major probabilities `[n_snapshots × n_cells]`,
/// accumulated in f64.
pub fn confidence_and_variability(trajectory: &[f32], n_cells: usize) -> Result<Dynamics> {
    if n_cells == 0 || trajectory.is_empty() || !trajectory.len().is_multiple_of(n_cells) {
        return Err(SclabelError::shape(format!("{} recorded probabilities are not whole snapshots of {n_cells} cells", trajectory.len())));
    }
    let n_snapshots = trajectory.len() / n_cells;
    let mut sum = vec![0f64; n_cells];
    for snapshot in trajectory.chunks_exact(n_cells) {
        sum.iter_mut().zip(snapshot).for_each(|(s, &p)| *s += p as f64);
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n_snapshots as f64).collect();
    let mut sq = vec![0f64; n_cells];
    for snapshot in trajectory.chunks_exact(n_cells) {
        sq.iter_mut().zip(snapshot).zip(&mean).for_each(|((s, &p), m)| *s += (p as f64 - m).powi(2));
    }
    if let Some(i) = mean.iter().position(|m| !m.is_finite()) {
        return Err(SclabelError::values(format!("training produced a non-finite probability for cell {i}; lower the learning rate or check the input scale")));
    }
    Ok(Dynamics {
        confidence: mean.iter().map(|&m| m as f32).collect(),
        variability: sq.iter().map(|&s| (s / n_snapshots as f64).sqrt() as f32).collect(),
        n_snapshots,
    })
}

/// What `follow_training_dynamics` returns.
pub struct DynamicsRun {
    pub model: Mlp,
    pub executor: crate::backend::Executor,
    pub history: Vec<EpochStats>,
    /// One per recorded label column, in the order given.
    pub dynamics: Vec<Dynamics>,
}

/// Trains on `labels` (codes per row of `x`, −1 = not trained on) over `rows` and records, for
/// each of `recorded` label columns (the training labels first, typically), the probability of
/// that column's label for every row in `rows`. Annotatability's `follow_training_dyn_neural_net`
/// (one column) and `follow_train_dyn_two_lables` (two).
pub async fn follow_training_dynamics<O: Observer>(
    x: &CsrMatrix,
    labels: &[i32],
    n_classes: usize,
    rows: &[usize],
    recorded: &[&[i32]],
    options: &TrainOptions,
    device: &Device,
    observer: &mut O,
) -> Result<DynamicsRun> {
    if options.n_epochs == 0 {
        return Err(SclabelError::InvalidOption { option: "train.n_epochs".into(), reason: "training dynamics need at least one epoch".into() });
    }
    if let Some(&r) = rows.iter().find(|&&r| r >= labels.len() || labels[r] < 0) {
        return Err(SclabelError::labels(format!("cell {r} has no label to follow")));
    }
    let record = Record { rows, labels: recorded.to_vec() };
    let trained = train_mlp(x, labels, n_classes, rows, options, Some(&record), device, observer).await?;
    let dynamics = trained.trajectories.iter().map(|t| confidence_and_variability(t, rows.len())).collect::<Result<Vec<_>>>()?;
    Ok(DynamicsRun { model: trained.model, executor: trained.executor, history: trained.history, dynamics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_the_mean_and_variability_the_population_sd() {
        // Two cells, three snapshots: cell 0 = 0.2, 0.4, 0.9; cell 1 = 0.5 constant.
        let t = [0.2, 0.5, 0.4, 0.5, 0.9, 0.5];
        let d = confidence_and_variability(&t, 2).unwrap();
        assert_eq!(d.n_snapshots, 3);
        assert!((d.confidence[0] - 0.5).abs() < 1e-6);
        let sd = ((0.09 + 0.01 + 0.16) / 3.0f64).sqrt() as f32; // ddof 0
        assert!((d.variability[0] - sd).abs() < 1e-6, "{} vs {sd}", d.variability[0]);
        assert_eq!((d.confidence[1], d.variability[1]), (0.5, 0.0));
        assert!(confidence_and_variability(&t, 4).is_err());
        assert!(confidence_and_variability(&[f32::NAN, 0.5], 1).is_err());
    }
}
