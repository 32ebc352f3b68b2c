//! The plain MLP of Annotatability (Linear + ReLU, no dropout, no batch norm): widths
//! G → ⌊G/2⌋ → ⌊G/4⌋ (→ ⌊G/8⌋ → ⌊G/16⌋) → C, for 3, 4 or 5 Linear layers.
use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::{Device, Tensor};
use burn::tensor::activation::relu;
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
        if w.iter().any(|&x| x == 0) {
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

    /// Builds the model with parameters drawn from the device's RNG (seed it first with
    /// `device.seed`). Parameters are drawn here, in layer order, so the same seed gives the same
    /// weights however the model is used afterwards.
    pub fn init(&self, device: &Device) -> Result<Mlp> {
        let widths = self.widths()?;
        let layers = widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        let model = Mlp { layers };
        model.visit(&mut Materialize);
        Ok(model)
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
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

/// burn initialises parameters lazily on first use; touching each one fixes the draw order.
struct Materialize;
impl ModuleVisitor for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}
