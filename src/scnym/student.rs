//! Where a training step's network work runs: the teacher's pseudolabels, the student's passes,
//! the losses, backward and the update. `Burn` is autodiff on any backend (WebGPU included) with
//! any of the config's options; `Host` runs the whole step on the host (`host_net`) for CPU
//! backends with the default options. Both take the same host-built `StepBatch` and draw the
//! same dropout masks in the same order, so a seed trains the same model on either (to float
//! rounding).
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::Transaction;
use rand::rngs::StdRng;

use crate::data::matrix::CsrMatrix;
use crate::data::row_blocks::RowSource;
use crate::error::{Result, SclabelError};
use crate::nn::host_linear::read_to_host;
use crate::scnym::config::UnsupCriterion;
use crate::scnym::host_net::HostScnym;
use crate::scnym::model::{BnState, DomainAdversary, Mode, ScnymNet};
use crate::scnym::ops::{gradient_reversal, soft_cross_entropy};
use crate::scnym::step::{RowMix, StepBatch};

#[derive(Module, Debug)]
pub struct Trainable {
    pub net: ScnymNet,
    pub dan: Option<DomainAdversary>,
}

pub struct BurnStudent {
    /// Out only while the optimiser updates it.
    pub model: Option<Trainable>,
    pub optim: ModuleOptimizer,
    pub bn: BnState,
    pub init_dropout: f64,
    /// The mean teacher's EMA decay (None: the teacher is the current model) and its state.
    pub mean_teacher: Option<f64>,
    pub teacher: Option<ScnymNet>,
    pub steps: usize,
    /// This epoch's loss sums (total, supervised, unsupervised, adversary), read once per epoch.
    pub sums: Option<[Tensor<1>; 4]>,
    /// The autodiff device.
    pub device: Device,
}

pub enum Student {
    Burn(Box<BurnStudent>),
    Host { net: Box<HostScnym>, sums: [f64; 4] },
}

/// A batch as a dense tensor.
fn dense_tensor(x: &CsrMatrix, device: &Device) -> Tensor<2> {
    let mut v = Vec::new();
    x.densify_rows_into(&(0..x.n_rows).collect::<Vec<_>>(), &mut v);
    Tensor::from_data(TensorData::new(v, [x.n_rows, x.n_cols]), device)
}

pub(crate) fn tensor2(v: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

fn tensor1(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// θ_T ← a·θ_T + (1 − a)·θ_S for every parameter (the mean teacher).
fn ema(teacher: ScnymNet, student: &ScnymNet, a: f64) -> ScnymNet {
    use crate::scnym::model::{Block, Norm, ResidualTail};
    use burn::module::Param;
    fn mix<const D: usize>(t: &Param<Tensor<D>>, s: &Param<Tensor<D>>, a: f64) -> Param<Tensor<D>> {
        Param::from_tensor(t.val() * a + s.val().inner() * (1.0 - a))
    }
    fn lin(t: &burn::nn::Linear, s: &burn::nn::Linear, a: f64) -> burn::nn::Linear {
        burn::nn::Linear { weight: mix(&t.weight, &s.weight, a), bias: t.bias.as_ref().zip(s.bias.as_ref()).map(|(t, s)| mix(t, s, a)) }
    }
    fn norm(t: &Norm, s: &Norm, a: f64) -> Norm {
        Norm { gamma: mix(&t.gamma, &s.gamma, a), beta: mix(&t.beta, &s.beta, a) }
    }
    let blocks = teacher
        .blocks
        .iter()
        .zip(&student.blocks)
        .map(|(t, s)| Block {
            linear: lin(&t.linear, &s.linear, a),
            norm: norm(&t.norm, &s.norm, a),
            residual: t.residual.as_ref().zip(s.residual.as_ref()).map(|(t, s)| ResidualTail {
                linear: lin(&t.linear, &s.linear, a),
                norm: norm(&t.norm, &s.norm, a),
                outer: norm(&t.outer, &s.outer, a),
            }),
        })
        .collect();
    ScnymNet { blocks, output: lin(&teacher.output, &student.output, a) }
}

impl Student {
    /// The eval-mode teacher's class probabilities, averaged over `inputs` (the unlabelled
    /// batch, or its augmentations), row-major.
    pub async fn teacher_probabilities(&mut self, inputs: &[&CsrMatrix]) -> Result<Vec<f32>> {
        match self {
            Student::Host { net, .. } => {
                let mut q = net.teacher_proba(inputs[0]);
                for x in &inputs[1..] {
                    q.iter_mut().zip(net.predict_proba(x)).for_each(|(a, b)| *a += b);
                }
                let k = inputs.len() as f32;
                if k > 1.0 {
                    q.iter_mut().for_each(|v| *v /= k);
                }
                Ok(q)
            }
            Student::Burn(s) => {
                let inner = s.device.clone().inner();
                let student = s.model().net.valid();
                let t_net = match s.mean_teacher {
                    Some(decay) => {
                        let a = (1.0 - 1.0 / (s.steps as f64 + 1.0)).min(decay);
                        let t = match s.teacher.take() {
                            Some(t) => ema(t, &student, a),
                            None => student.clone(),
                        };
                        s.teacher = Some(t.clone());
                        t
                    }
                    None => student,
                };
                let mut q_sum: Option<Tensor<2>> = None;
                for x in inputs {
                    let p = softmax(t_net.forward(dense_tensor(x, &inner), 0.0, Mode::Eval(&s.bn)).logits, 1);
                    q_sum = Some(match q_sum {
                        Some(q) => q + p,
                        None => p,
                    });
                }
                read_to_host(q_sum.expect("at least one input") / inputs.len() as f64).await
            }
        }
    }

    /// One training step on `batch` at learning rate `lr`; dropout masks come from `rng`.
    pub fn step(&mut self, batch: StepBatch, lr: f64, rng: &mut StdRng) {
        match self {
            Student::Host { net, sums } => {
                let losses = net.step(batch, lr, rng);
                sums.iter_mut().zip(losses).for_each(|(s, l)| *s += l);
            }
            Student::Burn(s) => s.step(batch, lr, rng),
        }
    }

    /// The epoch's mean losses (total, supervised, unsupervised, adversary) over `steps` steps;
    /// resets the sums.
    pub async fn take_epoch_losses(&mut self, steps: usize) -> Result<[f32; 4]> {
        let steps = steps.max(1) as f64;
        match self {
            Student::Host { sums, .. } => {
                let out = sums.map(|s| (s / steps) as f32);
                *sums = [0.0; 4];
                Ok(out)
            }
            Student::Burn(s) => {
                let Some(sums) = s.sums.take() else { return Ok([0.0; 4]) };
                let inner = s.device.clone().inner();
                let mut tx = Transaction::default();
                for t in sums {
                    tx = tx.register(t.inner());
                }
                let read = tx.execute_async().await.map_err(|e| SclabelError::backend(&inner, e))?;
                let vals: Vec<f32> = read.into_iter().map(|d| d.try_into_vec_as::<f32>().map(|v| v[0]).unwrap_or(f32::NAN)).collect();
                Ok([0, 1, 2, 3].map(|k| (vals[k] as f64 / steps) as f32))
            }
        }
    }

    /// Model selection's mean cross-entropy and accuracy on `rows` of `x` with classes `labels`,
    /// computed on the host for the host network; None for the burn student (its caller
    /// evaluates the snapshot on the device).
    pub fn evaluate_on_host(&self, x: &dyn RowSource, rows: &[usize], labels: &[usize]) -> Option<(f32, f32)> {
        match self {
            Student::Host { net, .. } => Some(net.evaluate(x, rows, labels)),
            Student::Burn(_) => None,
        }
    }

    /// The classifier and running statistics as they are now, on the inner `device`.
    pub fn snapshot(&self, device: &Device) -> (ScnymNet, BnState) {
        match self {
            Student::Host { net, .. } => net.to_burn(device),
            Student::Burn(s) => (s.model().net.valid(), s.bn.clone()),
        }
    }
}

impl BurnStudent {
    fn model(&self) -> &Trainable {
        self.model.as_ref().expect("the model is out only during an update")
    }

    fn step(&mut self, batch: StepBatch, lr: f64, rng: &mut StdRng) {
        let ad = self.device.clone();
        let net = &self.model().net;
        let mut stats = Vec::new();
        let StepBatch { sources, unsup, sup, dan } = batch;
        let g = sources.n_cols;
        let mut src = Vec::new();
        sources.densify_rows_into(&(0..sources.n_rows).collect::<Vec<_>>(), &mut src);
        let mut train = |rows: &RowMix, rng: &mut StdRng| {
            let x = tensor2(rows.apply(&src, g), rows.len(), g, &ad);
            net.forward(x, self.init_dropout, Mode::Train { rng, stats: &mut stats })
        };
        let fu = unsup.as_ref().map(|u| train(&u.rows, rng));
        let fl = train(&sup.rows, rng);
        let fd = dan.as_ref().map(|d| train(&d.rows, rng));
        let c = fl.logits.dims()[1];
        let nl = sup.rows.len();
        let ce = soft_cross_entropy(fl.logits, tensor2(sup.targets, nl, c, &ad));
        let sup_loss = match sup.cell_weights {
            Some(w) => (ce * tensor1(w, &ad)).mean(),
            None => ce.mean(),
        };
        let mut loss = sup_loss.clone();
        let zero = || Tensor::<1>::zeros([1], &ad);
        let mut unsup_loss = zero();
        if let (Some(u), Some(fu)) = (unsup, fu) {
            let nu = u.rows.len();
            let targets = tensor2(u.targets, nu, c, &ad);
            let per_cell = match u.criterion {
                UnsupCriterion::Mse => (softmax(fu.logits, 1) - targets).square().sum_dim(1).squeeze_dim::<1>(1),
                UnsupCriterion::Ce => soft_cross_entropy(fu.logits, targets),
            };
            let mask: Vec<f32> = (0..nu).map(|i| if i < u.n_conf { 1.0 } else { 0.0 }).collect();
            unsup_loss = (per_cell * tensor1(mask, &ad)).sum() / nu as f64;
            loss = loss + unsup_loss.clone() * u.weight;
        }
        let mut dan_loss = zero();
        if let (Some(d), Some(fd)) = (dan, fd) {
            let nd = d.rows.len();
            let n_domains = d.domains.len() / nd.max(1);
            let logits = self.model().dan.as_ref().expect("adversary").forward(gradient_reversal(relu(fd.embedding), d.reversal));
            dan_loss = soft_cross_entropy(logits, tensor2(d.domains, nd, n_domains, &ad)).mean() * d.scale;
            loss = loss + dan_loss.clone();
        }
        let add = [loss.clone().detach(), sup_loss.detach(), unsup_loss.detach(), dan_loss.detach()];
        self.sums = Some(match self.sums.take() {
            Some(s) => {
                let [a, b, c, d] = s;
                let [e, f, g, h] = add;
                [a + e, b + f, c + g, d + h]
            }
            None => add,
        });
        let grads = GradientsParams::from_grads(loss.backward(), self.model());
        let model = self.model.take().expect("the model");
        self.model = Some(self.optim.step(lr, model, grads));
        let k = self.bn.mean.len();
        for pass in stats.chunks(k) {
            self.bn.update(pass);
        }
        self.steps += 1;
    }
}
