//! Seeded minibatch sampling over CSR rows. Batches are lists of row indices; each is densified on
//! its own (`CsrMatrix::densify_rows_into`), never the whole matrix.
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Rows in order (evaluation).
    Sequential,
    /// A random permutation each epoch.
    Shuffle,
    /// Class-balanced with replacement: each draw picks a class uniformly, then a cell of it
    /// uniformly — the same distribution as weights 1/class-size (PyTorch's WeightedRandomSampler
    /// as scNym and Annotatability use it), in O(1) per draw.
    Balanced,
}

/// Yields epochs of minibatches from a fixed set of rows. ChaCha12 (rand's `StdRng`) with a fixed
/// seed gives the same batches natively and in wasm.
pub struct MinibatchSampler {
    rows: Vec<usize>,
    /// For `Balanced`: rows grouped by class.
    by_class: Vec<Vec<usize>>,
    sampling: Sampling,
    batch_size: usize,
    drop_last: bool,
    rng: StdRng,
}

impl MinibatchSampler {
    /// `rows`: the cells to sample from. `classes`: per row of the data set, its class (≥ 0) —
    /// required for `Balanced`, where rows with a negative class are skipped.
    pub fn new(rows: Vec<usize>, classes: Option<&[i32]>, sampling: Sampling, batch_size: usize, drop_last: bool, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(SclabelError::InvalidOption { option: "batch_size".into(), reason: "must be at least 1".into() });
        }
        if rows.is_empty() {
            return Err(SclabelError::InvalidOption { option: "rows".into(), reason: "no cells to sample from".into() });
        }
        let mut by_class: Vec<Vec<usize>> = Vec::new();
        if sampling == Sampling::Balanced {
            let classes =
                classes.ok_or_else(|| SclabelError::InvalidOption { option: "sampling".into(), reason: "balanced sampling needs class labels".into() })?;
            for &r in &rows {
                let c = classes[r];
                if c >= 0 {
                    if by_class.len() <= c as usize {
                        by_class.resize(c as usize + 1, Vec::new());
                    }
                    by_class[c as usize].push(r);
                }
            }
            by_class.retain(|v| !v.is_empty());
            if by_class.is_empty() {
                return Err(SclabelError::labels("balanced sampling: no labelled cells among the rows"));
            }
        }
        Ok(Self { rows, by_class, sampling, batch_size, drop_last, rng: StdRng::seed_from_u64(seed) })
    }

    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Number of batches one epoch yields.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.rows.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The next epoch's batches. One epoch draws as many cells as there are rows.
    pub fn epoch(&mut self) -> Vec<Vec<usize>> {
        let order: Vec<usize> = match self.sampling {
            Sampling::Sequential => self.rows.clone(),
            Sampling::Shuffle => {
                let mut v = self.rows.clone();
                v.shuffle(&mut self.rng);
                v
            }
            Sampling::Balanced => (0..self.rows.len())
                .map(|_| {
                    let c = self.rng.random_range(0..self.by_class.len());
                    let members = &self.by_class[c];
                    members[self.rng.random_range(0..members.len())]
                })
                .collect(),
        };
        let mut batches: Vec<Vec<usize>> = order.chunks(self.batch_size).map(<[usize]>::to_vec).collect();
        if self.drop_last && batches.last().is_some_and(|b| b.len() < self.batch_size) {
            batches.pop();
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_covers_every_row_once_and_is_seeded() {
        let mut s = MinibatchSampler::new((0..10).collect(), None, Sampling::Shuffle, 3, false, 7).unwrap();
        let e = s.epoch();
        assert_eq!(e.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let mut all: Vec<usize> = e.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        let mut t = MinibatchSampler::new((0..10).collect(), None, Sampling::Shuffle, 3, false, 7).unwrap();
        assert_eq!(t.epoch(), e);
        let mut d = MinibatchSampler::new((0..10).collect(), None, Sampling::Shuffle, 3, true, 7).unwrap();
        assert_eq!(d.epoch().len(), 3);
        assert_eq!(d.batches_per_epoch(), 3);
    }

    #[test]
    fn balanced_sampling_evens_out_classes() {
        // 90 cells of class 0, 10 of class 1: balanced draws are about half and half.
        let classes: Vec<i32> = (0..100).map(|i| i32::from(i >= 90)).collect();
        let mut s = MinibatchSampler::new((0..100).collect(), Some(&classes), Sampling::Balanced, 50, false, 1).unwrap();
        let drawn: Vec<usize> = (0..20).flat_map(|_| s.epoch().concat()).collect();
        let ones = drawn.iter().filter(|&&r| classes[r] == 1).count() as f64 / drawn.len() as f64;
        assert!((ones - 0.5).abs() < 0.05, "{ones}");
    }
}
