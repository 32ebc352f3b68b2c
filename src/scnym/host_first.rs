//! scNym's first Linear layer (genes → 256) on the host, for CPU backends: every pass of a
//! training step multiplies only the batch's stored values (`HostLinear`), and Adadelta updates the
//! layer on the host. The rest of the network stays in burn; the layer's output enters it as a
//! leaf, and that leaf's gradient after `backward` is what the host needs for dW. On a GPU the
//! dense layer stays on the device.
use burn::nn::Linear;
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::Gradients;

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::model::host_linear::HostLinear;
use crate::train::adadelta::{Adadelta, HostAdadeltaState};

pub struct HostFirstLayer {
    layer: HostLinear,
    optim: Adadelta,
    weight_state: HostAdadeltaState,
    bias_state: HostAdadeltaState,
    /// This step's training passes: the input rows (CSR) and the output leaf.
    passes: Vec<(CsrMatrix, Tensor<2>)>,
}

impl HostFirstLayer {
    pub async fn new(linear: &Linear, optim: Adadelta) -> Result<Self> {
        let mut layer = HostLinear::from_linear(linear).await?;
        let (weight, bias) = layer.params_mut();
        Ok(Self {
            weight_state: HostAdadeltaState::new(weight.len()),
            bias_state: HostAdadeltaState::new(bias.len()),
            layer,
            optim,
            passes: Vec::new(),
        })
    }

    fn apply(&self, x: &CsrMatrix, device: &Device) -> Tensor<2> {
        let rows: Vec<usize> = (0..x.n_rows).collect();
        let mut out = Vec::new();
        self.layer.forward(x, &rows, &mut out);
        Tensor::from_data(TensorData::new(out, [x.n_rows, self.layer.n_out()]), device)
    }

    /// The layer's output for a batch `x` as a leaf on the autodiff `device`, remembered for this
    /// step's `step`.
    pub fn forward_train(&mut self, x: CsrMatrix, device: &Device) -> Tensor<2> {
        let h = self.apply(&x, device).require_grad();
        self.passes.push((x, h.clone()));
        h
    }

    /// The layer's output without a gradient (eval-mode passes such as the pseudolabels').
    pub fn forward_eval(&self, x: &CsrMatrix, device: &Device) -> Tensor<2> {
        self.apply(x, device)
    }

    /// After `backward`: the gradient of every pass of this step, then one Adadelta step.
    pub async fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        let mut grad = self.layer.zero_grad();
        for (x, leaf) in std::mem::take(&mut self.passes) {
            let device = leaf.device();
            let Some(dh) = leaf.grad(grads) else {
                continue; // a pass whose output did not reach the loss
            };
            let dh = dh.into_data_async().await.map_err(|e| SclabelError::backend(&device, e))?;
            let dh = dh.try_into_vec_as::<f32>().map_err(|e| SclabelError::backend(&device, e))?;
            let rows: Vec<usize> = (0..x.n_rows).collect();
            self.layer.add_grad(&x, &rows, &dh, &mut grad);
        }
        let (weight, bias) = self.layer.params_mut();
        self.optim.step_host(lr as f32, weight, &grad.weight, &mut self.weight_state);
        self.optim.step_host(lr as f32, bias, &grad.bias, &mut self.bias_state);
        Ok(())
    }

    /// The layer as a burn Linear on `device` (for evaluation, snapshots and the saved model).
    pub fn to_linear(&self, device: &Device) -> Linear {
        self.layer.to_linear(device)
    }
}
