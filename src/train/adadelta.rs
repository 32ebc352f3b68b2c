//! Adadelta (Zeiler 2012) with PyTorch's update rule, which burn does not ship; scNym trains with it
//! (lr 1.0, ρ 0.9, ε 1e-6, L2 weight decay 1e-4 added to the gradient):
//!   g ← g + λθ;  s ← ρs + (1−ρ)g²;  Δ = √(a+ε)/√(s+ε) · g;  a ← ρa + (1−ρ)Δ²;  θ ← θ − lr·Δ
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::prelude::{Device, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct Adadelta {
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for Adadelta {
    fn default() -> Self {
        Self { rho: 0.9, eps: 1e-6, weight_decay: 0.0 }
    }
}

impl Adadelta {
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

/// Adadelta's state for parameters kept on the host (scNym's host network on CPU backends).
pub struct HostAdadeltaState {
    square_avg: Vec<f32>,
    acc_delta: Vec<f32>,
}

impl HostAdadeltaState {
    pub fn new(len: usize) -> Self {
        Self { square_avg: vec![0.0; len], acc_delta: vec![0.0; len] }
    }
}

impl Adadelta {
    /// The same rule on host slices, element-wise in f32 like the tensor version.
    pub fn step_host(&self, lr: f32, params: &mut [f32], grad: &[f32], state: &mut HostAdadeltaState) {
        assert!(params.len() == grad.len() && params.len() == state.square_avg.len(), "Adadelta: parameter, gradient and state sizes differ");
        let (rho, eps, wd) = (self.rho as f32, self.eps as f32, self.weight_decay as f32);
        for (((p, &g), s), a) in params.iter_mut().zip(grad).zip(state.square_avg.iter_mut()).zip(state.acc_delta.iter_mut()) {
            let g = if wd > 0.0 { g + *p * wd } else { g };
            *s = *s * rho + g * g * (1.0 - rho);
            let delta = (*a + eps).sqrt() / (*s + eps).sqrt() * g;
            *a = *a * rho + delta * delta * (1.0 - rho);
            *p -= delta * lr;
        }
    }
}

#[derive(Clone)]
pub struct AdadeltaState<const D: usize> {
    square_avg: Tensor<D>,
    acc_delta: Tensor<D>,
}

impl<const D: usize> RecordState for AdadeltaState<D> {
    // Only used when saving optimiser state, which sclabel never does (it would be a synchronous
    // read, impossible on WebGPU).
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "square_avg", self.square_avg.to_data());
        out.push_tensor(prefix, "acc_delta", self.acc_delta.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let s = src.take_tensor(prefix, "square_avg")?;
        let a = src.take_tensor(prefix, "acc_delta")?;
        Some(Self { square_avg: Tensor::from_data(s, device), acc_delta: Tensor::from_data(a, device) })
    }
}

impl Optimizer for Adadelta {
    type State<const D: usize> = AdadeltaState<D>;

    fn step<const D: usize>(&self, lr: LearningRate, tensor: Tensor<D>, grad: Tensor<D>, state: Option<Self::State<D>>) -> (Tensor<D>, Option<Self::State<D>>) {
        let grad = if self.weight_decay > 0.0 { grad + tensor.clone() * self.weight_decay } else { grad };
        let (square_avg, acc_delta) = match state {
            Some(s) => (s.square_avg, s.acc_delta),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let square_avg = square_avg * self.rho + grad.clone().square() * (1.0 - self.rho);
        let delta = (acc_delta.clone() + self.eps).sqrt() / (square_avg.clone() + self.eps).sqrt() * grad;
        let acc_delta = acc_delta * self.rho + delta.clone().square() * (1.0 - self.rho);
        (tensor - delta * lr, Some(AdadeltaState { square_avg, acc_delta }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdadeltaState { square_avg: state.square_avg.to_device(device), acc_delta: state.acc_delta.to_device(device) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::prelude::TensorData;

    /// PyTorch's rule written out in f64 for three steps with changing gradients.
    #[test]
    fn matches_pytorch_update_rule() {
        let device = crate::backend::cpu(crate::backend::BackendRequest::Cpu, "test").unwrap().device;
        let opt = Adadelta { rho: 0.9, eps: 1e-6, weight_decay: 1e-4 };
        let theta0 = [0.5f64, -1.5, 2.0];
        let grads = [[0.1f64, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.0, 0.2]];
        let (mut th, mut s, mut a) = (theta0.to_vec(), vec![0f64; 3], vec![0f64; 3]);
        let mut t = Tensor::<1>::from_data(TensorData::new(theta0.iter().map(|&v| v as f32).collect::<Vec<_>>(), [3]), &device);
        let mut state = None;
        for g in grads {
            for i in 0..3 {
                let gi = g[i] + 1e-4 * th[i];
                s[i] = 0.9 * s[i] + 0.1 * gi * gi;
                let d = (a[i] + 1e-6).sqrt() / (s[i] + 1e-6).sqrt() * gi;
                a[i] = 0.9 * a[i] + 0.1 * d * d;
                th[i] -= 1.0 * d;
            }
            let gt = Tensor::<1>::from_data(TensorData::new(g.iter().map(|&v| v as f32).collect::<Vec<_>>(), [3]), &device);
            let (nt, ns) = opt.step(1.0, t, gt, state);
            t = nt;
            state = ns;
        }
        let got: Vec<f32> = t.into_data().try_into_vec_as::<f32>().unwrap();
        for (g, e) in got.iter().zip(&th) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {th:?}");
        }
        // the host version: the same three steps
        let mut host: Vec<f32> = theta0.iter().map(|&v| v as f32).collect();
        let mut state = HostAdadeltaState::new(3);
        for g in grads {
            opt.step_host(1.0, &mut host, &g.map(|v| v as f32), &mut state);
        }
        for (h, e) in host.iter().zip(&th) {
            assert!((*h as f64 - e).abs() < 1e-6, "host {host:?} vs {th:?}");
        }
    }
}
