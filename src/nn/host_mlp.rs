//! The whole plain MLP trained on the host, for CPU backends with SGD: the sparse first layer
//! ([`HostLinear`]), then each dense layer as direct gemm calls on buffers kept for the backward
//! pass. The maths is `Mlp` + cross-entropy + PyTorch's SGD with momentum, step for step; what
//! it saves is burn's autodiff graph around small matmuls (an allocation per op and per
//! gradient, transposed operands copied), which ran gemm at about half the speed it reaches when
//! called directly on these shapes (bench/results/README.md).
use burn::nn::Linear;
use burn::prelude::Device;

use crate::data::matrix::CsrMatrix;
use crate::error::Result;
use crate::nn::gemm::{matmul, Operand};
use crate::nn::host_linear::{HostLinear, HostParams};
use crate::nn::host_ops::{add_column_sums, dense_input_grad, hard_ce_grad, relu_grad_in_place, relu_in_place, sgd_momentum};
use crate::nn::mlp::Mlp;

/// A dense Linear layer (weight `[n_in, n_out]`, row-major: burn's layout) with its SGD momentum
/// buffers.
struct DenseLayer {
    params: HostParams,
    velocity: Vec<f32>,
    bias_velocity: Vec<f32>,
    /// Momentum buffers start at the first gradient (PyTorch: buf = g on the first step).
    stepped: bool,
}

impl DenseLayer {
    async fn from_linear(linear: &Linear) -> Result<Self> {
        let params = HostParams::read(linear).await?;
        Ok(Self { velocity: vec![0.0; params.weight.len()], bias_velocity: vec![0.0; params.n_out], params, stepped: false })
    }

    /// Gradient with respect to the input (`grad_out · Wᵀ`), zeroed where the input (a ReLU
    /// output) is 0 — so it is the gradient before that ReLU. Call before `sgd_step`.
    fn input_grad(&self, input: &[f32], grad_out: &[f32], rows: usize, out: &mut Vec<f32>) {
        let HostParams { n_in, n_out, weight, .. } = &self.params;
        dense_input_grad(weight, *n_in, *n_out, grad_out, rows, out);
        relu_grad_in_place(out, input);
    }

    /// v ← μ·v + inputᵀ·grad_out (v = the gradient on the first step), W ← W − lr·v; same for b.
    fn sgd_step(&mut self, input: &[f32], grad_out: &[f32], rows: usize, learning_rate: f32, momentum: f32) {
        let first = !self.stepped;
        let (decay, read) = if first { (0.0, false) } else { (momentum, true) };
        let p = &mut self.params;
        matmul(&mut self.velocity, p.n_in, p.n_out, rows, Operand::Transposed(input), Operand::RowMajor(grad_out), decay, read);
        p.weight.iter_mut().zip(&self.velocity).for_each(|(w, v)| *w -= learning_rate * v);
        let mut db = vec![0f32; p.n_out];
        add_column_sums(grad_out, &mut db);
        sgd_momentum(&mut p.bias, &mut self.bias_velocity, &db, learning_rate, momentum, first);
        self.stepped = true;
    }
}

/// Per-layer buffers of one batch: post-ReLU activations (the last entry: logits) and gradients.
#[derive(Default)]
pub struct Scratch {
    acts: Vec<Vec<f32>>,
    grad: Vec<f32>,
    grad_in: Vec<f32>,
}

pub struct HostMlp {
    first: HostLinear,
    dense: Vec<DenseLayer>,
}

/// Loss summed over a batch's cells and how many it classified right (before the update).
pub struct StepStats {
    pub loss_sum: f64,
    pub correct: usize,
}

impl HostMlp {
    /// Copies a burn MLP (on any device) to the host.
    pub async fn from_mlp(mlp: &Mlp) -> Result<Self> {
        let (first, rest) = mlp.layers().split_first().expect("an MLP has layers");
        let first = HostLinear::from_linear(first).await?;
        let mut dense = Vec::new();
        for layer in rest {
            dense.push(DenseLayer::from_linear(layer).await?);
        }
        Ok(Self { first, dense })
    }

    /// Back to a burn MLP on `device`.
    pub fn to_mlp(&self, device: &Device) -> Mlp {
        let mut layers = vec![self.first.to_linear(device)];
        layers.extend(self.dense.iter().map(|l| l.params.to_linear(device)));
        Mlp::from_layers(layers)
    }

    pub fn n_classes(&self) -> usize {
        self.dense.last().map_or(self.first.n_out(), |l| l.params.n_out)
    }

    /// Logits of `rows` of `x`, row-major `[rows.len(), n_classes]`; the activations stay in
    /// `scratch` for a backward pass.
    pub fn forward<'s>(&self, x: &CsrMatrix, rows: &[usize], scratch: &'s mut Scratch) -> &'s [f32] {
        let b = rows.len();
        scratch.acts.resize_with(self.dense.len() + 1, Vec::new);
        self.first.forward(x, rows, &mut scratch.acts[0]);
        for (i, layer) in self.dense.iter().enumerate() {
            relu_in_place(&mut scratch.acts[i]);
            let (done, next) = scratch.acts.split_at_mut(i + 1);
            layer.params.forward(&done[i], b, &mut next[0]);
        }
        scratch.acts.last().expect("at least the first layer")
    }

    /// One SGD step on the mean cross-entropy of `rows` against `labels` (per row of `x`, each a
    /// class of the model).
    pub fn train_step(&mut self, x: &CsrMatrix, rows: &[usize], labels: &[i32], learning_rate: f32, momentum: f32, scratch: &mut Scratch) -> StepStats {
        let b = rows.len();
        let c = self.n_classes();
        self.forward(x, rows, scratch);
        let logits = scratch.acts.last().expect("logits");
        let (loss_sum, correct) = hard_ce_grad(logits, rows.iter().map(|&r| labels[r] as usize), c, &mut scratch.grad);
        let stats = StepStats { loss_sum, correct };
        for i in (0..self.dense.len()).rev() {
            let input = &scratch.acts[i];
            self.dense[i].input_grad(input, &scratch.grad, b, &mut scratch.grad_in);
            self.dense[i].sgd_step(input, &scratch.grad, b, learning_rate, momentum);
            std::mem::swap(&mut scratch.grad, &mut scratch.grad_in);
        }
        self.first.sgd_step(x, rows, &scratch.grad, learning_rate, momentum);
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cpu, BackendRequest};
    use crate::block_on;
    use crate::nn::mlp::MlpConfig;
    use burn::module::Module;
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::prelude::{Int, Tensor, TensorData};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// Three SGD steps of the host MLP against burn's autodiff + SGD on the same dense data.
    #[test]
    fn steps_match_burn_autodiff_and_sgd() {
        let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
        let ad = device.clone().autodiff();
        let (n, g, c) = (48, 90, 4);
        let mut rng = StdRng::seed_from_u64(9);
        let dense: Vec<f32> = (0..n * g).map(|_| if rng.random::<f32>() < 0.2 { rng.random::<f32>() * 3.0 } else { 0.0 }).collect();
        let x = CsrMatrix::from_dense(n, g, &dense).unwrap();
        let labels: Vec<i32> = (0..n).map(|i| (i * 7 % c) as i32).collect();
        let config = MlpConfig { n_genes: g, n_classes: c, n_layers: 4 };
        let mut burn_net = config.init(&ad, 4).unwrap();
        let mut host = block_on(HostMlp::from_mlp(&config.init(&device, 4).unwrap())).unwrap();
        let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0))).init();
        let loss_fn = CrossEntropyLossConfig::new().init(&ad);
        let mut scratch = Scratch::default();
        for step in 0..3 {
            let rows: Vec<usize> = (0..n).filter(|i| (i + step) % 3 != 0).collect();
            let xt = Tensor::<2>::from_data(TensorData::new(xb_of(&x, &rows), [rows.len(), g]), &ad);
            let yt = Tensor::<1, Int>::from_data(TensorData::new(rows.iter().map(|&r| labels[r]).collect::<Vec<_>>(), [rows.len()]), &ad);
            let loss = loss_fn.forward(burn_net.forward(xt), yt);
            let want_loss: f32 = loss.clone().into_data().try_into_vec_as::<f32>().unwrap()[0];
            let grads = GradientsParams::from_grads(loss.backward(), &burn_net);
            burn_net = optim.step(0.05, burn_net, grads);
            let stats = host.train_step(&x, &rows, &labels, 0.05, 0.9, &mut scratch);
            let got_loss = (stats.loss_sum / rows.len() as f64) as f32;
            assert!((got_loss - want_loss).abs() < 1e-5, "step {step}: loss {got_loss} vs {want_loss}");
        }
        let rows: Vec<usize> = (0..n).collect();
        let got = host.forward(&x, &rows, &mut scratch).to_vec();
        let want: Vec<f32> =
            burn_net.valid().forward(Tensor::from_data(TensorData::new(xb_of(&x, &rows), [n, g]), &device)).into_data().try_into_vec_as::<f32>().unwrap();
        let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "logits after three steps differ by {max}");
        // and the weights come back as the same network
        let back: Vec<f32> =
            host.to_mlp(&device).forward(Tensor::from_data(TensorData::new(xb_of(&x, &rows), [n, g]), &device)).into_data().try_into_vec_as::<f32>().unwrap();
        assert!(back.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    fn xb_of(x: &CsrMatrix, rows: &[usize]) -> Vec<f32> {
        let mut v = Vec::new();
        x.densify_rows_into(rows, &mut v);
        v
    }
}
