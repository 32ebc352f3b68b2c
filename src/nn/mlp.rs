//! The plain MLP of Annotatability (Linear + ReLU, no dropout, no batch norm): widths
//! G → ⌊G/2⌋ → ⌊G/4⌋ (→ ⌊G/8⌋ → ⌊G/16⌋) → C, for 3, 4 or 5 Linear layers.
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::activation::relu;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SclabelError};

/// The G → G/2 layer makes the MLP quadratic in the gene count: 10k genes are 50M weights
/// (200 MB in f32, plus gradients and optimiser state). Beyond this, refuse rather than run out of
/// memory in a browser tab.
const MAX_PARAMS: usize = 60_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub n_genes: usize,
    pub n_classes: usize,
    /// Number of Linear layers: 3, 4 or 5.
    pub n_layers: usize,
}

impl MlpConfig {
    /// Layer widths, input first.
    pub fn widths(&self) -> Result<Vec<usize>> {
        if !(3..=5).contains(&self.n_layers) {
            return Err(SclabelError::InvalidOption { option: "n_layers".into(), reason: format!("must be 3, 4 or 5, got {}", self.n_layers) });
        }
        let mut w: Vec<usize> = (0..self.n_layers).map(|k| self.n_genes >> k).collect();
        if w.contains(&0) {
            return Err(SclabelError::InvalidOption {
                option: "n_layers".into(),
                reason: format!("{} genes are too few for {} layers (a hidden layer would have width 0)", self.n_genes, self.n_layers),
            });
        }
        w.push(self.n_classes);
        let params: usize = w.windows(2).map(|p| p[0] * p[1] + p[1]).sum();
        if params > MAX_PARAMS {
            return Err(SclabelError::InvalidOption {
                option: "n_genes".into(),
                reason: format!(
                    "{} genes make a {}-parameter MLP (G → G/2 → …), too big to train here; select highly variable genes (a few thousand) first",
                    self.n_genes, params
                ),
            });
        }
        Ok(w)
    }

    /// Builds the model with PyTorch's default Linear initialisation (weights and biases
    /// ~ U(−1/√fan_in, 1/√fan_in)), drawn from our own RNG seeded with `seed` — not from burn's
    /// process-global RNG, which concurrent runs would share — so a seed gives the same weights on
    /// every backend and in every thread.
    pub fn init(&self, device: &Device, seed: u64) -> Result<Mlp> {
        let widths = self.widths()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let layers = widths.windows(2).map(|w| torch_linear(w[0], w[1], device, &mut rng)).collect();
        Ok(Mlp { layers })
    }
}

/// A Linear layer (weight `[fan_in, fan_out]`, burn's layout) with PyTorch's default
/// initialisation: weight, then bias, drawn from `rng` ~ U(−1/√fan_in, 1/√fan_in). Every network
/// here starts from it (this MLP, scNym's).
pub fn torch_linear(fan_in: usize, fan_out: usize, device: &Device, rng: &mut StdRng) -> Linear {
    let bound = 1.0 / (fan_in as f32).sqrt();
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = draw(fan_in * fan_out);
    let bias = draw(fan_out);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [fan_in, fan_out]), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(TensorData::new(bias, [fan_out]), device))),
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    pub fn from_layers(layers: Vec<Linear>) -> Mlp {
        Mlp { layers }
    }

    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Logits.
    ///
    /// # Shapes
    /// - x: `[batch, n_genes]` → `[batch, n_classes]`
    pub fn forward(&self, mut x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}
