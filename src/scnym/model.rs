//! The scNym classifier (Linear → BatchNorm → Dropout → ReLU blocks, then the output layer) and its
//! domain adversary. Batch-norm running statistics live outside the module in [`BnState`]: they are
//! state the training loop updates, not parameters, and keeping them out means a snapshot of the
//! best model can't be changed by later steps. Dropout masks come from the host RNG
//! (see `dropout`) so every backend sees the same ones.
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::activation::relu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::nn::mlp::torch_linear;
use crate::scnym::config::ModelKwargs;
use crate::scnym::ops::dropout_mask;

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;
pub const BLOCK_DROPOUT: f64 = 0.5;

/// What a saved model needs to be rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchSpec {
    pub n_genes: usize,
    pub n_classes: usize,
    pub n_hidden: usize,
    pub n_hidden_init: usize,
    pub n_layers: usize,
    pub init_dropout: f64,
    pub residual: bool,
}

impl ArchSpec {
    pub fn new(n_genes: usize, n_classes: usize, kw: &ModelKwargs) -> Self {
        Self {
            n_genes,
            n_classes,
            n_hidden: kw.n_hidden,
            n_hidden_init: kw.n_hidden_init,
            n_layers: kw.n_layers,
            init_dropout: kw.init_dropout,
            residual: kw.residual,
        }
    }

    /// Widths of the hidden blocks' outputs, in order.
    pub fn block_widths(&self) -> Vec<usize> {
        let mut w = vec![self.n_hidden_init, self.n_hidden];
        w.extend(std::iter::repeat_n(self.n_hidden, self.n_layers - 1));
        w
    }

    /// Number of batch norms, in forward order (residual blocks have three).
    pub fn n_norms(&self) -> usize {
        2 + (self.n_layers - 1) * if self.residual { 3 } else { 1 }
    }
}

#[derive(Module, Debug)]
pub struct Norm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
}

/// ResBlock(x) = ReLU(BN(Linear(ReLU(BN(Linear(x))))) + x): `Block::linear`/`norm` are its first
/// half, this is its second, then `outer` is the block's own BatchNorm.
#[derive(Module, Debug)]
pub struct ResidualTail {
    pub linear: Linear,
    pub norm: Norm,
    pub outer: Norm,
}

#[derive(Module, Debug)]
pub struct Block {
    pub linear: Linear,
    pub norm: Norm,
    pub residual: Option<ResidualTail>,
}

#[derive(Module, Debug)]
pub struct ScnymNet {
    pub blocks: Vec<Block>,
    pub output: Linear,
}

#[derive(Module, Debug)]
pub struct DomainAdversary {
    pub hidden: Linear,
    pub output: Linear,
}

/// Running mean and (unbiased) variance of each batch norm, in forward order.
#[derive(Debug, Clone)]
pub struct BnState {
    pub mean: Vec<Tensor<1>>,
    pub var: Vec<Tensor<1>>,
    /// Batches the statistics were updated with (PyTorch's num_batches_tracked).
    pub updates: u64,
}

impl BnState {
    pub fn init(arch: &ArchSpec, device: &Device) -> Self {
        let widths = norm_widths(arch);
        Self {
            mean: widths.iter().map(|&w| Tensor::zeros([w], device)).collect(),
            var: widths.iter().map(|&w| Tensor::ones([w], device)).collect(),
            updates: 0,
        }
    }

    /// running ← (1 − m)·running + m·batch, for every batch norm the forward pass went through.
    pub fn update(&mut self, batch: &[(Tensor<1>, Tensor<1>)]) {
        for (k, (m, v)) in batch.iter().enumerate() {
            let dev = self.mean[k].device();
            let (m, v) = (m.clone().detach().inner().to_device(&dev), v.clone().detach().inner().to_device(&dev));
            self.mean[k] = self.mean[k].clone() * (1.0 - BN_MOMENTUM) + m * BN_MOMENTUM;
            self.var[k] = self.var[k].clone() * (1.0 - BN_MOMENTUM) + v * BN_MOMENTUM;
        }
        self.updates += 1;
    }
}

fn norm_widths(arch: &ArchSpec) -> Vec<usize> {
    let mut w = Vec::new();
    for (i, &width) in arch.block_widths().iter().enumerate() {
        if arch.residual && i >= 2 {
            w.extend([width, width, width]);
        } else {
            w.push(width);
        }
    }
    w
}

/// How a forward pass treats batch norm and dropout.
pub enum Mode<'a> {
    /// Running statistics, no dropout (prediction, pseudolabels, validation).
    Eval(&'a BnState),
    /// Batch statistics (pushed to `stats` for the running update) and host-drawn dropout masks.
    Train { rng: &'a mut StdRng, stats: &'a mut Vec<(Tensor<1>, Tensor<1>)> },
}

/// Dropout with a mask drawn on the host.
fn dropout(x: Tensor<2>, p: f64, rng: &mut StdRng) -> Tensor<2> {
    if p <= 0.0 {
        return x;
    }
    let [n, w] = x.dims();
    let mask = dropout_mask(n, w, p, rng);
    let device = x.device();
    x * Tensor::<2>::from_data(TensorData::new(mask, [n, w]), &device)
}

/// Outputs of one forward pass.
pub struct Forward {
    pub logits: Tensor<2>,
    /// Output of the last block before its ReLU (scNym's `X_scnym`).
    pub embedding: Tensor<2>,
}

impl Norm {
    fn forward(&self, x: Tensor<2>, k: &mut usize, mode: &mut Mode) -> Tensor<2> {
        let idx = *k;
        *k += 1;
        let gamma = self.gamma.val().unsqueeze_dim::<2>(0);
        let beta = self.beta.val().unsqueeze_dim::<2>(0);
        match mode {
            Mode::Eval(state) => {
                let device = x.device();
                let mean = state.mean[idx].clone().to_device(&device).unsqueeze_dim::<2>(0);
                let std = (state.var[idx].clone().to_device(&device) + BN_EPS).sqrt().unsqueeze_dim::<2>(0);
                (x - mean) / std * gamma + beta
            }
            Mode::Train { stats, .. } => {
                let n = x.dims()[0] as f64;
                let mean = x.clone().mean_dim(0);
                let centered = x - mean.clone();
                let var = centered.clone().square().mean_dim(0);
                // Rounded as the host network rounds it. `centered · (γ/σ)` launches 7% fewer GPU
                // kernels but drifts from the host network in training (docs/development.md).
                let out = centered / (var.clone() + BN_EPS).sqrt() * gamma + beta;
                // PyTorch tracks the unbiased variance.
                let unbiased = var.squeeze_dim::<1>(0) * (n / (n - 1.0).max(1.0));
                stats.push((mean.squeeze_dim::<1>(0), unbiased));
                out
            }
        }
    }
}

impl Block {
    /// Linear → BN → (residual tail) → Dropout; returns the pre-ReLU output.
    fn forward(&self, x: Tensor<2>, k: &mut usize, mode: &mut Mode) -> Tensor<2> {
        let mut z = self.norm.forward(self.linear.forward(x.clone()), k, mode);
        if let Some(res) = &self.residual {
            let y = res.norm.forward(res.linear.forward(relu(z)), k, mode);
            z = res.outer.forward(relu(y + x), k, mode);
        }
        match mode {
            Mode::Train { rng, .. } => dropout(z, BLOCK_DROPOUT, rng),
            Mode::Eval(_) => z,
        }
    }
}

impl ScnymNet {
    /// Random initialisation as PyTorch's defaults (U(±1/√fan_in) for Linear, γ = 1, β = 0), drawn
    /// from our own seeded RNG so a seed means the same model on every backend.
    pub fn init(arch: &ArchSpec, device: &Device, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let widths = arch.block_widths();
        let mut fan_in = arch.n_genes;
        let mut blocks = Vec::new();
        for (i, &w) in widths.iter().enumerate() {
            let linear = torch_linear(fan_in, w, device, &mut rng);
            let norm = init_norm(w, device);
            let residual = (arch.residual && i >= 2).then(|| ResidualTail {
                linear: torch_linear(w, w, device, &mut rng),
                norm: init_norm(w, device),
                outer: init_norm(w, device),
            });
            blocks.push(Block { linear, norm, residual });
            fan_in = w;
        }
        let output = torch_linear(fan_in, arch.n_classes, device, &mut rng);
        Self { blocks, output }
    }

    pub fn forward(&self, x: Tensor<2>, init_dropout: f64, mut mode: Mode) -> Forward {
        let x = match &mut mode {
            Mode::Train { rng, .. } if init_dropout > 0.0 => input_dropout(x, init_dropout, rng),
            _ => x,
        };
        let mut k = 0;
        let mut z = self.blocks[0].forward(x, &mut k, &mut mode);
        for block in &self.blocks[1..] {
            z = block.forward(relu(z), &mut k, &mut mode);
        }
        Forward { logits: self.output.forward(relu(z.clone())), embedding: z }
    }
}

impl DomainAdversary {
    pub fn with_domains(n_hidden: usize, n_domains: usize, device: &Device, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xDA4);
        Self { hidden: torch_linear(n_hidden, n_hidden, device, &mut rng), output: torch_linear(n_hidden, n_domains, device, &mut rng) }
    }

    /// Domain logits from the post-ReLU embedding (already through gradient reversal).
    pub fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(h)))
    }
}

/// scNym's input dropout: expm1 → dropout → rescale each cell to 1e6 → log1p.
fn input_dropout(x: Tensor<2>, p: f64, rng: &mut StdRng) -> Tensor<2> {
    let counts = dropout(x.exp() - 1.0, p, rng);
    let total = counts.clone().sum_dim(1).clamp_min(1e-12);
    (counts / total * 1e6 + 1.0).log()
}

fn init_norm(width: usize, device: &Device) -> Norm {
    Norm { gamma: Param::from_tensor(Tensor::ones([width], device)), beta: Param::from_tensor(Tensor::zeros([width], device)) }
}
