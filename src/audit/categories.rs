//! From confidence and variability to decisions: simulated label noise for data-driven cutoffs,
//! trusted / untrusted cells, and the three categories of the Annotatability notebooks.
use rand::rngs::StdRng;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};

/// A cell's category (Annotatability's PBMC notebook). One spelling everywhere — serde, the JS
/// result, the CLI's CSV, the exported obs column: `easy-to-learn`, `ambiguous`, `hard-to-learn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// "Correctly annotated": trusted, confidence > 0.95 and variability < 0.15 (defaults).
    EasyToLearn,
    /// "Ambiguously annotated": trusted but not easy.
    Ambiguous,
    /// "Erroneously annotated": not trusted.
    HardToLearn,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::EasyToLearn => "easy-to-learn",
            Category::Ambiguous => "ambiguous",
            Category::HardToLearn => "hard-to-learn",
        }
    }
}

/// Thresholds that separate trusted from untrusted cells.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Cutoffs {
    pub confidence: f32,
    pub variability: f32,
}

/// Thresholds of the "easy-to-learn" category.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct EasyThresholds {
    pub confidence: f32,
    pub variability: f32,
}

impl Default for EasyThresholds {
    fn default() -> Self {
        Self { confidence: 0.95, variability: 0.15 }
    }
}

/// Gives each of `rows` (with probability `fraction`) a label drawn uniformly from the *other*
/// classes. Returns the new codes (for every row of `codes`) and the rows that changed, in order.
pub fn flip_labels(codes: &[i32], rows: &[usize], n_classes: usize, fraction: f64, rng: &mut StdRng) -> Result<(Vec<i32>, Vec<usize>)> {
    if !(0.0..1.0).contains(&fraction) || fraction.is_nan() {
        return Err(SclabelError::InvalidOption { option: "flip_fraction".into(), reason: format!("must be in [0, 1), got {fraction}") });
    }
    if n_classes < 2 {
        return Err(SclabelError::labels("flipping labels needs at least two classes"));
    }
    let mut out = codes.to_vec();
    let mut flipped = Vec::new();
    for &r in rows {
        if rng.random::<f64>() < fraction {
            // Uniform over the other n − 1 classes.
            let k = rng.random_range(0..n_classes as i32 - 1);
            out[r] = if k >= codes[r] { k + 1 } else { k };
            flipped.push(r);
        }
    }
    Ok((out, flipped))
}

/// numpy's default (linear-interpolation) percentile, q in [0, 100].
pub fn percentile(values: &[f32], q: f64) -> Result<f32> {
    if values.is_empty() {
        return Err(SclabelError::values("percentile of no values"));
    }
    if !(0.0..=100.0).contains(&q) {
        return Err(SclabelError::InvalidOption { option: "percentile".into(), reason: format!("must be in [0, 100], got {q}") });
    }
    let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    v.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Ok((v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)) as f32)
}

/// Trusted = confidence above its cutoff or variability above its cutoff (a cell the network
/// learns, or is still learning, is not flagged).
pub fn trusted(confidence: &[f32], variability: &[f32], cutoffs: Cutoffs) -> Vec<bool> {
    confidence.iter().zip(variability).map(|(&c, &v)| c > cutoffs.confidence || v > cutoffs.variability).collect()
}

pub fn categorize(confidence: &[f32], variability: &[f32], trusted: &[bool], easy: EasyThresholds) -> Vec<Category> {
    confidence
        .iter()
        .zip(variability)
        .zip(trusted)
        .map(|((&c, &v), &t)| match (t, c > easy.confidence && v < easy.variability) {
            (false, _) => Category::HardToLearn,
            (true, true) => Category::EasyToLearn,
            (true, false) => Category::Ambiguous,
        })
        .collect()
}

/// Ranks 1..=n of `values` in ascending order, tied values sharing their mean rank.
pub fn mid_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut rank = vec![0f64; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| rank[k] = mid);
        i = j + 1;
    }
    rank
}

/// Area under the ROC curve of `score` for telling `positive` cells from the rest (ties count
/// one half), by ranks in O(n log n). `None` when either group is empty.
pub fn auroc(score: &[f64], positive: &[bool]) -> Option<f64> {
    let rank = mid_ranks(score);
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = score.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let rank_sum: f64 = rank.iter().zip(positive).filter(|(_, &p)| p).map(|(r, _)| r).sum();
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn flipped_labels_always_change_and_are_uniform_over_the_others() {
        let codes: Vec<i32> = (0..30_000).map(|i: i32| i % 3).collect();
        let rows: Vec<usize> = (0..codes.len()).collect();
        let (new, flipped) = flip_labels(&codes, &rows, 3, 0.1, &mut StdRng::seed_from_u64(1)).unwrap();
        let frac = flipped.len() as f64 / codes.len() as f64;
        assert!((frac - 0.1).abs() < 0.01, "{frac}");
        assert!(flipped.iter().all(|&r| new[r] != codes[r] && (0..3).contains(&new[r])));
        let unchanged = (0..codes.len()).filter(|r| !flipped.contains(r)).all(|r| new[r] == codes[r]);
        assert!(unchanged);
        // From class 0, the two others are about equally likely.
        let from0: Vec<i32> = flipped.iter().filter(|&&r| codes[r] == 0).map(|&r| new[r]).collect();
        let ones = from0.iter().filter(|&&c| c == 1).count() as f64 / from0.len() as f64;
        assert!((ones - 0.5).abs() < 0.06, "{ones}");
        assert!(flip_labels(&codes, &rows, 3, 1.5, &mut StdRng::seed_from_u64(1)).is_err());
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], 25) == 1.75; ([5], q) == 5
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 25.0).unwrap(), 1.75);
        assert_eq!(percentile(&[5.0], 90.0).unwrap(), 5.0);
        assert_eq!(percentile(&[1.0, 2.0], 100.0).unwrap(), 2.0);
        assert!(percentile(&[], 50.0).is_err());
    }

    #[test]
    fn categories_follow_the_notebook_rules() {
        let conf = [0.99, 0.6, 0.1, 0.1, 0.97];
        let var = [0.01, 0.3, 0.05, 0.4, 0.2];
        let t = trusted(&conf, &var, Cutoffs { confidence: 0.3, variability: 0.25 });
        assert_eq!(t, vec![true, true, false, true, true]);
        let c = categorize(&conf, &var, &t, EasyThresholds::default());
        use Category::*;
        assert_eq!(c, vec![EasyToLearn, Ambiguous, HardToLearn, Ambiguous, Ambiguous]);
        for k in [EasyToLearn, Ambiguous, HardToLearn] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str(), "serde and as_str spell {k:?} alike");
        }
    }

    #[test]
    fn auroc_by_ranks_matches_pair_counting() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.9];
        let p = [false, true, false, true, false, false];
        // Pairs (pos, neg): 0.4 vs {0.1, 0.35, 0.4, 0.9} = 1 + 1 + 0.5 + 0; 0.8 vs the same = 3.
        assert!((auroc(&s, &p).unwrap() - 5.5 / 8.0).abs() < 1e-12);
        assert_eq!(auroc(&s, &[false; 6]), None);
    }
}
