//! The host executor's elementwise maths, written once for its networks (`host_mlp`, the
//! Annotatability MLP; `scnym::host_net`, scNym's network and adversary): ReLU and its gradient
//! mask, softmax and the cross-entropies with their gradients, bias gradients, the dense layer's
//! input gradient, PyTorch's SGD with momentum. Each is the burn executor's op (autodiff) written
//! out; the tests of `host_mlp` and `host_net` check the two executors step for step.
use crate::nn::gemm::{matmul, Operand};

pub fn relu_in_place(v: &mut [f32]) {
    v.iter_mut().for_each(|a| *a = a.max(0.0));
}

/// The gradient through a ReLU: zero where its output `act` is 0.
pub fn relu_grad_in_place(grad: &mut [f32], act: &[f32]) {
    grad.iter_mut().zip(act).for_each(|(g, &a)| {
        if a <= 0.0 {
            *g = 0.0
        }
    });
}

pub fn log_sum_exp(z: &[f32]) -> f32 {
    let max = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    z.iter().map(|&v| (v - max).exp()).sum::<f32>().ln() + max
}

pub fn softmax_in_place(z: &mut [f32]) {
    let lse = log_sum_exp(z);
    z.iter_mut().for_each(|v| *v = (*v - lse).exp());
}

/// Soft-label cross-entropy of each row of `logits` (overwritten with the gradient of
/// `factor · Σᵢ wᵢ·CEᵢ`), returning that loss. ∂CEᵢ/∂z = softmax(z)·Σt − t.
pub fn soft_ce_grad(logits: &mut [f32], targets: &[f32], c: usize, weights: Option<&[f32]>, factor: f64) -> f64 {
    let mut loss = 0f64;
    for (i, (z, t)) in logits.chunks_exact_mut(c).zip(targets.chunks_exact(c)).enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        let lse = log_sum_exp(z);
        loss += w as f64 * t.iter().zip(z.iter()).map(|(&t, &v)| t as f64 * (lse - v) as f64).sum::<f64>();
        let total: f32 = t.iter().sum();
        let s = (w as f64 * factor) as f32;
        z.iter_mut().zip(t).for_each(|(v, &t)| *v = ((*v - lse).exp() * total - t) * s);
    }
    loss * factor
}

/// Mean cross-entropy of `logits` (rows of `c`) against one class per row, its gradient
/// ((softmax − onehot) / rows) written to `grad`; returns the summed loss and how many rows' first
/// maximum is their class.
pub fn hard_ce_grad(logits: &[f32], classes: impl Iterator<Item = usize>, c: usize, grad: &mut Vec<f32>) -> (f64, usize) {
    let b = logits.len() / c;
    grad.clear();
    grad.resize(b * c, 0.0);
    let (mut loss_sum, mut correct) = (0f64, 0usize);
    for ((z, g), y) in logits.chunks_exact(c).zip(grad.chunks_exact_mut(c)).zip(classes) {
        let (argmax, max) = z.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
        let sum: f32 = z.iter().map(|&v| (v - max).exp()).sum();
        loss_sum += ((sum.ln() + max) - z[y]) as f64;
        correct += usize::from(argmax == y);
        for (gi, &v) in g.iter_mut().zip(z) {
            *gi = (v - max).exp() / sum / b as f32;
        }
        g[y] -= 1.0 / b as f32;
    }
    (loss_sum, correct)
}

/// Adds the column sums of a row-major gradient `[rows, into.len()]` to `into` (a bias gradient).
pub fn add_column_sums(grad_out: &[f32], into: &mut [f32]) {
    grad_out.chunks_exact(into.len()).for_each(|row| into.iter_mut().zip(row).for_each(|(s, g)| *s += g));
}

/// A dense layer's gradient with respect to its input, `g · Wᵀ` (`rows × n_in`; the weight
/// `[n_in, n_out]`, row-major), into `out`.
pub fn dense_input_grad(weight: &[f32], n_in: usize, n_out: usize, g: &[f32], rows: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(rows * n_in, 0.0);
    matmul(out, rows, n_in, n_out, Operand::RowMajor(g), Operand::Transposed(weight), 0.0, false);
}

/// PyTorch's SGD with momentum, element-wise: v ← μ·v + g (v = g on the first step), p ← p − lr·v.
pub fn sgd_momentum(params: &mut [f32], velocity: &mut [f32], grad: &[f32], learning_rate: f32, momentum: f32, first: bool) {
    for ((p, v), g) in params.iter_mut().zip(velocity.iter_mut()).zip(grad) {
        *v = if first { *g } else { momentum * *v + g };
        *p -= learning_rate * *v;
    }
}
