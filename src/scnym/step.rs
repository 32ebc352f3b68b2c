//! One training step's inputs as the host builds them (sampling, augmentation, pseudolabel
//! selection, MixUp draws), for either student. Every pass's rows are recipes over the step's few
//! distinct source rows — row i = λᵢ·src[aᵢ] + (1 − λᵢ)·src[bᵢ] — rather than mixed matrices:
//! burn mixes the densified inputs, the host student mixes the first layer's outputs (the layer is
//! affine and λ + (1 − λ) = 1, so that is the same), which runs the sparse first layer once per
//! source row instead of once per pass row.
use crate::data::matrix::CsrMatrix;
use crate::scnym::config::UnsupCriterion;

/// A pass's rows as mixes of source rows.
#[derive(Debug, Clone, Default)]
pub struct RowMix {
    pub a: Vec<usize>,
    pub b: Vec<usize>,
    pub lambda: Vec<f32>,
}

impl RowMix {
    /// Unmixed source rows.
    pub fn copies(rows: impl IntoIterator<Item = usize>) -> Self {
        let mut m = Self::default();
        rows.into_iter().for_each(|r| m.push_copy(r));
        m
    }

    /// Appends an unmixed source row.
    pub fn push_copy(&mut self, row: usize) {
        self.push(row, row, 1.0);
    }

    pub fn push(&mut self, a: usize, b: usize, lambda: f32) {
        self.a.push(a);
        self.b.push(b);
        self.lambda.push(lambda);
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// The rows, from row-major `src` rows of `width`: λ·a + (1 − λ)·b (MixUp's arithmetic; an
    /// unmixed row is copied).
    pub fn apply(&self, src: &[f32], width: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len() * width);
        for ((&a, &b), &l) in self.a.iter().zip(&self.b).zip(&self.lambda) {
            let ra = &src[a * width..(a + 1) * width];
            if l == 1.0 && a == b {
                out.extend_from_slice(ra);
            } else {
                let rb = &src[b * width..(b + 1) * width];
                out.extend(ra.iter().zip(rb).map(|(&x, &y)| l * x + (1.0 - l) * y));
            }
        }
        out
    }

    /// The transpose of `apply`: adds each row's gradient `g` back to its sources in `into`.
    pub fn scatter_add(&self, g: &[f32], width: usize, into: &mut [f32]) {
        for (i, ((&a, &b), &l)) in self.a.iter().zip(&self.b).zip(&self.lambda).enumerate() {
            let gi = &g[i * width..(i + 1) * width];
            if l == 1.0 && a == b {
                into[a * width..(a + 1) * width].iter_mut().zip(gi).for_each(|(s, &v)| *s += v);
            } else {
                into[a * width..(a + 1) * width].iter_mut().zip(gi).for_each(|(s, &v)| *s += l * v);
                into[b * width..(b + 1) * width].iter_mut().zip(gi).for_each(|(s, &v)| *s += (1.0 - l) * v);
            }
        }
    }
}

/// MixMatch's unlabelled pass: mixed confident cells first, then the unconfident ones, whose
/// rows add 0 to the loss (they are there for batch norm).
pub struct UnsupPass {
    pub rows: RowMix,
    pub targets: Vec<f32>,
    pub n_conf: usize,
    pub criterion: UnsupCriterion,
    /// The ramp's weight this epoch.
    pub weight: f64,
}

/// The labelled pass: soft targets, optional per-cell weights (class weighting).
pub struct SupPass {
    pub rows: RowMix,
    pub targets: Vec<f32>,
    pub cell_weights: Option<Vec<f32>>,
}

/// The adversary's pass: one-hot domains, a factor on its loss, the gradient-reversal weight.
pub struct DanPass {
    pub rows: RowMix,
    pub domains: Vec<f32>,
    pub scale: f64,
    pub reversal: f64,
}

/// The student passes of one step, in the order their forwards run (which is the order of their
/// dropout draws and running-statistics updates).
pub struct StepBatch {
    /// The step's distinct input rows (ln(CPM+1), model genes).
    pub sources: CsrMatrix,
    pub unsup: Option<UnsupPass>,
    pub sup: SupPass,
    pub dan: Option<DanPass>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_mix_apply_and_its_transpose() {
        let src = [1.0f32, 2.0, 10.0, 20.0, 100.0, 200.0];
        let mut m = RowMix::default();
        m.push(0, 2, 0.75);
        m.push_copy(1);
        m.push(2, 1, 0.5);
        assert_eq!(m.apply(&src, 2), vec![25.75, 51.5, 10.0, 20.0, 55.0, 110.0]);
        // ⟨apply(x), g⟩ = ⟨x, scatter(g)⟩
        let g = [1.0f32, -1.0, 0.5, 2.0, 3.0, 0.25];
        let mut back = vec![0f32; 6];
        m.scatter_add(&g, 2, &mut back);
        assert_eq!(back, vec![0.75, -0.75, 2.0, 2.125, 1.75, -0.125]);
        let lhs: f32 = m.apply(&src, 2).iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f32 = src.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-3);
    }
}
