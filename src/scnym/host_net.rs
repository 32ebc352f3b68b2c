//! The whole scNym training step on the host, for CPU backends with the default options
//! (Adadelta, no input dropout, no residual blocks, no mean teacher): the first layer from the
//! stored values of the step's source rows only (`HostLinear`; the passes mix its outputs, see
//! `step`), the dense layers as direct gemm calls, batch norm,
//! dropout, the losses, their gradients and Adadelta as plain loops over buffers kept for the
//! backward pass. The maths is `ScnymNet` + `DomainAdversary` + the step's losses in burn's
//! autodiff, with the same dropout draws in the same order; what it saves is burn's graph around
//! small ops (an allocation per op and per gradient), which was about half of a step's time.
use burn::module::Param;
use burn::prelude::{Device, Tensor, TensorData};
use rand::rngs::StdRng;

use crate::data::matrix::CsrMatrix;
use crate::data::row_blocks::RowSource;
use crate::error::Result;
use crate::nn::gemm::{matmul, Operand};
use crate::nn::host_linear::{read_to_host, HostLinear, HostParams, LinearGrad};
use crate::nn::host_ops::{add_column_sums, dense_input_grad, log_sum_exp, relu_grad_in_place, relu_in_place, soft_ce_grad, softmax_in_place};
use crate::nn::simd::{tile_major, tile_major_into};
use crate::nn::sparse_act::{SparseAct, TILE};
use crate::scnym::config::UnsupCriterion;
use crate::scnym::model::{Block, BnState, DomainAdversary, Norm, ScnymNet, BLOCK_DROPOUT, BN_EPS, BN_MOMENTUM};
use crate::scnym::ops::dropout_mask;
use crate::scnym::step::{RowMix, StepBatch};
use crate::train::adadelta::{Adadelta, HostAdadeltaState};

/// A dense layer with its gradient and Adadelta state.
struct Dense {
    params: HostParams,
    /// The weights' column tiles for `SparseAct::forward`, renewed by each step.
    tiles: Vec<f32>,
    /// The gradient's column tiles in `backward_sparse` (kept: an allocation per call faulted pages in).
    scratch: Vec<f32>,
    grad_w: Vec<f32>,
    grad_b: Vec<f32>,
    state_w: HostAdadeltaState,
    state_b: HostAdadeltaState,
}

impl Dense {
    fn new(params: HostParams) -> Self {
        let (w, b) = (params.weight.len(), params.bias.len());
        let tiles = tile_major::<TILE>(&params.weight, params.n_in, params.n_out);
        Self {
            params,
            tiles,
            scratch: Vec::new(),
            grad_w: vec![0.0; w],
            grad_b: vec![0.0; b],
            state_w: HostAdadeltaState::new(w),
            state_b: HostAdadeltaState::new(b),
        }
    }

    /// `input · W + b` for a training-mode activation input.
    fn forward_sparse(&self, input: &SparseAct, out: &mut Vec<f32>) {
        input.forward(&self.tiles, &self.params.bias, out);
    }

    /// Adds this pass's gradients (dW += inputᵀ·g, db += column sums of g) and writes the
    /// gradient with respect to the input (g·Wᵀ) to `grad_in`.
    fn backward(&mut self, input: &[f32], g: &[f32], rows: usize, grad_in: &mut Vec<f32>) {
        let HostParams { n_in, n_out, weight, .. } = &self.params;
        matmul(&mut self.grad_w, *n_in, *n_out, rows, Operand::Transposed(input), Operand::RowMajor(g), 1.0, true);
        add_column_sums(g, &mut self.grad_b);
        dense_input_grad(weight, *n_in, *n_out, g, rows, grad_in);
    }

    /// `backward` for a training-mode activation input: the weight gradient from its non-zeros,
    /// the input gradient only where it is non-zero (what its ReLU and dropout let through).
    fn backward_sparse(&mut self, input: &SparseAct, g: &[f32], grad_in: &mut Vec<f32>) {
        input.add_weight_grad(g, &mut self.grad_w, &mut self.scratch);
        add_column_sums(g, &mut self.grad_b);
        input.masked_input_grad(g, &self.params.weight, grad_in);
    }

    fn step(&mut self, optim: &Adadelta, lr: f32) {
        optim.step_host(lr, &mut self.params.weight, &self.grad_w, &mut self.state_w);
        optim.step_host(lr, &mut self.params.bias, &self.grad_b, &mut self.state_b);
        self.grad_w.fill(0.0);
        self.grad_b.fill(0.0);
        tile_major_into::<TILE>(&self.params.weight, self.params.n_in, self.params.n_out, &mut self.tiles);
    }
}

/// A batch norm's parameters, gradients, Adadelta state and running statistics.
struct Norm1d {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    grad_gamma: Vec<f32>,
    grad_beta: Vec<f32>,
    state_gamma: HostAdadeltaState,
    state_beta: HostAdadeltaState,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

impl Norm1d {
    fn step(&mut self, optim: &Adadelta, lr: f32) {
        optim.step_host(lr, &mut self.gamma, &self.grad_gamma, &mut self.state_gamma);
        optim.step_host(lr, &mut self.beta, &self.grad_beta, &mut self.state_beta);
        self.grad_gamma.fill(0.0);
        self.grad_beta.fill(0.0);
    }
}

/// The domain adversary: Linear → ReLU → Linear.
struct Adversary {
    hidden: Dense,
    output: Dense,
}

/// What one training-mode pass keeps for its backward pass, per block: x̂ (normalised, before
/// γ and β), 1/σ, the dropout mask and the block's output after its ReLU, dense and (as input to
/// the next 256-wide layer: every block but the last) by its non-zeros.
struct Pass {
    n: usize,
    xhat: Vec<Vec<f32>>,
    inv_std: Vec<Vec<f32>>,
    mask: Vec<Vec<f32>>,
    act: Vec<Vec<f32>>,
    sparse: Vec<SparseAct>,
    /// Batch mean and unbiased variance per block, for the running statistics.
    stats: Vec<(Vec<f32>, Vec<f32>)>,
}

/// The step's losses (for the epoch's record) — total, supervised, unsupervised, adversary.
pub type StepLosses = [f64; 4];

pub struct HostScnym {
    first: HostLinear,
    first_grad: LinearGrad,
    first_state: (HostAdadeltaState, HostAdadeltaState),
    /// The Linear layers of blocks 1.., then the output layer.
    dense: Vec<Dense>,
    norms: Vec<Norm1d>,
    dan: Option<Adversary>,
    bn_updates: u64,
    optim: Adadelta,
    n_classes: usize,
    /// The last teacher input and the first layer's output on it: the step that follows starts
    /// its sources with the same unlabelled rows, and the layer is the same in both modes.
    teacher_first: Option<(CsrMatrix, Vec<f32>)>,
}

impl HostScnym {
    /// Copies a non-residual network, its adversary and running statistics to the host.
    pub async fn new(net: &ScnymNet, dan: Option<&DomainAdversary>, bn: &BnState, optim: Adadelta) -> Result<Self> {
        assert!(net.blocks.iter().all(|b| b.residual.is_none()), "the host network has no residual blocks");
        let first = HostLinear::from_linear(&net.blocks[0].linear).await?;
        let first_grad = first.zero_grad();
        let first_state = (HostAdadeltaState::new(first_grad.weight.len()), HostAdadeltaState::new(first_grad.bias.len()));
        let mut dense = Vec::new();
        for block in &net.blocks[1..] {
            dense.push(Dense::new(HostParams::read(&block.linear).await?));
        }
        dense.push(Dense::new(HostParams::read(&net.output).await?));
        let n_classes = dense.last().expect("output layer").params.n_out;
        let mut norms = Vec::new();
        for (k, block) in net.blocks.iter().enumerate() {
            let gamma = read_to_host(block.norm.gamma.val()).await?;
            let beta = read_to_host(block.norm.beta.val()).await?;
            let w = gamma.len();
            norms.push(Norm1d {
                grad_gamma: vec![0.0; w],
                grad_beta: vec![0.0; w],
                state_gamma: HostAdadeltaState::new(w),
                state_beta: HostAdadeltaState::new(w),
                running_mean: read_to_host(bn.mean[k].clone()).await?,
                running_var: read_to_host(bn.var[k].clone()).await?,
                gamma,
                beta,
            });
        }
        let dan = match dan {
            Some(d) => Some(Adversary { hidden: Dense::new(HostParams::read(&d.hidden).await?), output: Dense::new(HostParams::read(&d.output).await?) }),
            None => None,
        };
        Ok(Self { first, first_grad, first_state, dense, norms, dan, bn_updates: bn.updates, optim, n_classes, teacher_first: None })
    }

    /// The classifier and its running statistics as burn modules on `device` (model selection,
    /// snapshots, the saved model).
    pub fn to_burn(&self, device: &Device) -> (ScnymNet, BnState) {
        let vec1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        let blocks = self
            .norms
            .iter()
            .enumerate()
            .map(|(k, n)| Block {
                linear: if k == 0 { self.first.to_linear(device) } else { self.dense[k - 1].params.to_linear(device) },
                norm: Norm { gamma: Param::from_tensor(vec1(&n.gamma)), beta: Param::from_tensor(vec1(&n.beta)) },
                residual: None,
            })
            .collect();
        let net = ScnymNet { blocks, output: self.dense.last().expect("output layer").params.to_linear(device) };
        let bn = BnState {
            mean: self.norms.iter().map(|n| vec1(&n.running_mean)).collect(),
            var: self.norms.iter().map(|n| vec1(&n.running_var)).collect(),
            updates: self.bn_updates,
        };
        (net, bn)
    }

    /// Eval-mode class probabilities of `x`'s rows (running statistics, no dropout), row-major.
    pub fn predict_proba(&self, x: &CsrMatrix) -> Vec<f32> {
        let mut h = Vec::new();
        self.first.forward(x, &(0..x.n_rows).collect::<Vec<_>>(), &mut h);
        self.proba_from_first(h, x.n_rows)
    }

    /// `predict_proba` for the pseudolabels of the step that follows, which reuses the first
    /// layer's output on `x` when its sources start with `x`'s rows (not so for augmented copies).
    pub fn teacher_proba(&mut self, x: &CsrMatrix) -> Vec<f32> {
        let mut h = Vec::new();
        self.first.forward(x, &(0..x.n_rows).collect::<Vec<_>>(), &mut h);
        let p = self.proba_from_first(h.clone(), x.n_rows);
        self.teacher_first = Some((x.clone(), h));
        p
    }

    /// The first layer's output on `sources`, reusing the teacher's on its leading rows when they
    /// are the teacher's input (checked value by value: cheap beside the layer).
    fn first_layer(&mut self, sources: &CsrMatrix) -> Vec<f32> {
        let reuse = self.teacher_first.take().filter(|(x, _)| x.n_rows <= sources.n_rows && (0..x.n_rows).all(|i| x.row(i) == sources.row(i)));
        let done = reuse.as_ref().map_or(0, |(x, _)| x.n_rows);
        let mut rest = Vec::new();
        self.first.forward(sources, &(done..sources.n_rows).collect::<Vec<_>>(), &mut rest);
        match reuse {
            Some((_, mut h)) => {
                h.extend_from_slice(&rest);
                h
            }
            None => rest,
        }
    }

    /// Eval-mode probabilities from the first layer's output `h` (`n` rows).
    fn proba_from_first(&self, h: Vec<f32>, n: usize) -> Vec<f32> {
        let mut logits = self.logits_from_first(h, n);
        for row in logits.chunks_exact_mut(self.n_classes) {
            softmax_in_place(row);
        }
        logits
    }

    /// Model selection's numbers in eval mode: the mean cross-entropy and the accuracy of the
    /// classes `labels` (one per row of `rows`) on those rows of `x`, taken a few thousand at a time.
    pub fn evaluate(&self, x: &dyn RowSource, rows: &[usize], labels: &[usize]) -> (f32, f32) {
        const CHUNK: usize = 4096;
        let (mut loss, mut hits) = (0f64, 0usize);
        let mut h = Vec::new();
        for (chunk, labels) in rows.chunks(CHUNK).zip(labels.chunks(CHUNK)) {
            let part = x.take_rows(chunk);
            self.first.forward(&part, &(0..chunk.len()).collect::<Vec<_>>(), &mut h);
            let logits = self.logits_from_first(std::mem::take(&mut h), chunk.len());
            for (z, &y) in logits.chunks_exact(self.n_classes).zip(labels) {
                loss += (log_sum_exp(z) - z[y]) as f64;
                // the first maximum, as burn's argmax
                let top = z.iter().enumerate().fold(0, |best, (k, &v)| if v > z[best] { k } else { best });
                hits += (top == y) as usize;
            }
        }
        let n = rows.len().max(1) as f64;
        ((loss / n) as f32, (hits as f64 / n) as f32)
    }

    /// Eval-mode logits from the first layer's output `h` (`n` rows).
    fn logits_from_first(&self, h: Vec<f32>, n: usize) -> Vec<f32> {
        self.eval_from_first(h, n, None)
    }

    /// Eval-mode logits from the first layer's output `h`; with `embedding`, the last hidden
    /// block's output before its ReLU is appended to it (scNym's `X_scnym`).
    fn eval_from_first(&self, mut h: Vec<f32>, n: usize, mut embedding: Option<&mut Vec<f32>>) -> Vec<f32> {
        let mut act = Vec::new();
        let last = self.norms.len() - 1;
        for (k, norm) in self.norms.iter().enumerate() {
            if k > 0 {
                self.dense[k - 1].params.forward(&act, n, &mut h);
            }
            let w = norm.gamma.len();
            let scale: Vec<f32> = norm.running_var.iter().zip(&norm.gamma).map(|(&v, &g)| g / (v + BN_EPS as f32).sqrt()).collect();
            let normed = |row: &'_ [f32]| {
                row.iter().zip(&norm.running_mean).zip(&scale).zip(&norm.beta).map(|(((&v, &m), &s), &b)| (v - m) * s + b).collect::<Vec<f32>>()
            };
            act.clear();
            for row in h.chunks_exact(w) {
                let z = normed(row);
                if k == last {
                    if let Some(e) = embedding.as_deref_mut() {
                        e.extend_from_slice(&z);
                    }
                }
                act.extend(z.into_iter().map(|v| v.max(0.0)));
            }
        }
        let mut logits = Vec::new();
        self.dense.last().expect("output layer").params.forward(&act, n, &mut logits);
        logits
    }

    /// Eval-mode class probabilities of `x`'s rows and, with `embedding`, the embedding appended
    /// to it (cells × the last hidden width, row-major): prediction on CPU backends.
    pub fn predict(&self, x: &CsrMatrix, embedding: Option<&mut Vec<f32>>) -> Vec<f32> {
        let mut h = Vec::new();
        self.first.forward(x, &(0..x.n_rows).collect::<Vec<_>>(), &mut h);
        let mut p = self.eval_from_first(h, x.n_rows, embedding);
        for row in p.chunks_exact_mut(self.n_classes) {
            softmax_in_place(row);
        }
        p
    }

    /// A training-mode pass (batch statistics, dropout drawn from `rng`) from the first layer's
    /// output `h` (`n` rows): the activations it keeps, and the logits.
    fn forward_train(&self, mut h: Vec<f32>, n: usize, rng: &mut StdRng) -> (Pass, Vec<f32>) {
        let k_blocks = self.norms.len();
        let (mut xhats, mut inv_stds, mut masks, mut acts, mut stats) = (
            Vec::with_capacity(k_blocks),
            Vec::with_capacity(k_blocks),
            Vec::with_capacity(k_blocks),
            Vec::<Vec<f32>>::with_capacity(k_blocks),
            Vec::with_capacity(k_blocks),
        );
        let mut sparse: Vec<SparseAct> = Vec::with_capacity(k_blocks);
        for (k, norm) in self.norms.iter().enumerate() {
            if k > 0 {
                let input = SparseAct::from_dense(&acts[k - 1], n, self.norms[k - 1].gamma.len());
                self.dense[k - 1].forward_sparse(&input, &mut h);
                sparse.push(input);
            }
            let w = norm.gamma.len();
            let mut mean = vec![0f32; w];
            add_column_sums(&h, &mut mean);
            mean.iter_mut().for_each(|m| *m /= n as f32);
            let mut var = vec![0f32; w];
            for row in h.chunks_exact(w) {
                var.iter_mut().zip(row).zip(&mean).for_each(|((s, &v), &m)| *s += (v - m) * (v - m));
            }
            var.iter_mut().for_each(|v| *v /= n as f32);
            let inv_std: Vec<f32> = var.iter().map(|&v| 1.0 / (v + BN_EPS as f32).sqrt()).collect();
            let mask = dropout_mask(n, w, BLOCK_DROPOUT, rng);
            // x̂ in h's buffer (the next layer writes a new h) and the block's output, in one pass
            let mut xhat = std::mem::take(&mut h);
            let mut act = vec![0f32; n * w];
            let (mean_, inv_std_, gamma, beta) = (&mean[..w], &inv_std[..w], &norm.gamma[..w], &norm.beta[..w]);
            for ((x, a), m) in xhat.chunks_exact_mut(w).zip(act.chunks_exact_mut(w)).zip(mask.chunks_exact(w)) {
                for j in 0..w {
                    let xh = (x[j] - mean_[j]) * inv_std_[j];
                    x[j] = xh;
                    a[j] = ((gamma[j] * xh + beta[j]) * m[j]).max(0.0);
                }
            }
            // PyTorch tracks the unbiased variance.
            let unbiased = var.iter().map(|&v| v * (n as f32 / (n as f32 - 1.0).max(1.0))).collect();
            stats.push((mean, unbiased));
            xhats.push(xhat);
            inv_stds.push(inv_std);
            masks.push(mask);
            acts.push(act);
        }
        let mut logits = Vec::new();
        self.dense.last().expect("output layer").params.forward(acts.last().expect("a block"), n, &mut logits);
        (Pass { n, xhat: xhats, inv_std: inv_stds, mask: masks, act: acts, sparse, stats }, logits)
    }

    /// Backward through the blocks from the gradient with respect to the last block's output
    /// (after its ReLU), adding the blocks' parameter gradients; returns the gradient with respect
    /// to the first layer's output.
    fn backward_blocks(&mut self, pass: &Pass, mut g_act: Vec<f32>) -> Vec<f32> {
        let n = pass.n;
        let mut g_in = Vec::new();
        for k in (0..self.norms.len()).rev() {
            let norm = &mut self.norms[k];
            let w = norm.gamma.len();
            let (xhat, act, mask, inv_std) = (&pass.xhat[k], &pass.act[k], &pass.mask[k], &pass.inv_std[k]);
            // through the ReLU and dropout (g_y = g·mask where the output was > 0), with the column
            // sums batch norm's backward needs, in one pass (index loops over equal-length rows
            // vectorise; nested zips of five slices did not)
            let mut g_y = g_act;
            let mut sum_g = vec![0f32; w];
            let mut sum_gx = vec![0f32; w];
            for (((g, a), m), x) in g_y.chunks_exact_mut(w).zip(act.chunks_exact(w)).zip(mask.chunks_exact(w)).zip(xhat.chunks_exact(w)) {
                let (sg, sgx) = (&mut sum_g[..w], &mut sum_gx[..w]);
                for j in 0..w {
                    // a select of computed values (a branch around the loads kept it scalar)
                    let v = g[j] * m[j];
                    let v = if a[j] > 0.0 { v } else { 0.0 };
                    g[j] = v;
                    sg[j] += v;
                    sgx[j] += v * x[j];
                }
            }
            norm.grad_gamma.iter_mut().zip(&sum_gx).for_each(|(a, b)| *a += b);
            norm.grad_beta.iter_mut().zip(&sum_g).for_each(|(a, b)| *a += b);
            // through batch norm: dh = γ/(nσ) · (n·g − Σg − x̂·Σ(g·x̂))
            let nf = n as f32;
            let coef: Vec<f32> = norm.gamma.iter().zip(inv_std).map(|(&g, &s)| g * s / nf).collect();
            let (coef, sg, sgx) = (&coef[..w], &sum_g[..w], &sum_gx[..w]);
            for (g, x) in g_y.chunks_exact_mut(w).zip(xhat.chunks_exact(w)) {
                for j in 0..w {
                    g[j] = coef[j] * (nf * g[j] - sg[j] - x[j] * sgx[j]);
                }
            }
            if k == 0 {
                return g_y;
            }
            self.dense[k - 1].backward_sparse(&pass.sparse[k - 1], &g_y, &mut g_in);
            g_act = std::mem::take(&mut g_in);
        }
        unreachable!("a network has at least one block")
    }

    /// The gradient with respect to the last block's output from the output layer's `g_logits`.
    fn backward_output(&mut self, pass: &Pass, g_logits: &[f32]) -> Vec<f32> {
        let mut g = Vec::new();
        let n = pass.n;
        self.dense.last_mut().expect("output layer").backward(pass.act.last().expect("a block"), g_logits, n, &mut g);
        g
    }

    /// One training step: the first layer on the step's source rows, the passes' forwards (in
    /// order) from their mixes of its output, the losses, the backward pass, one Adadelta step
    /// for every parameter, and the running statistics (pass by pass).
    pub fn step(&mut self, batch: StepBatch, lr: f64, rng: &mut StdRng) -> StepLosses {
        let c = self.n_classes;
        let StepBatch { sources, unsup, sup, dan } = batch;
        let width = self.first.n_out();
        let h_src = self.first_layer(&sources);
        let run_pass = |rows: &RowMix, rng: &mut StdRng| self.forward_train(rows.apply(&h_src, width), rows.len(), rng);
        let u = unsup.map(|p| {
            let (pass, logits) = run_pass(&p.rows, rng);
            (pass, logits, p)
        });
        let (l_pass, l_logits) = run_pass(&sup.rows, rng);
        let d = dan.map(|p| {
            let (pass, _) = run_pass(&p.rows, rng);
            (pass, p)
        });
        // the first layer's gradient, gathered per source row
        let mut g_src = vec![0f32; h_src.len()];
        let mut losses = [0f64; 4];
        let mut all_stats = Vec::new();

        if let Some((pass, logits, p)) = u {
            let (targets, n_conf, criterion, weight) = (p.targets, p.n_conf, p.criterion, p.weight);
            let nu = pass.n;
            let mut g = logits;
            let mut loss = 0f64;
            let scale = (weight / nu as f64) as f32;
            for (i, (z, t)) in g.chunks_exact_mut(c).zip(targets.chunks_exact(c)).enumerate() {
                if i >= n_conf {
                    z.fill(0.0);
                    continue;
                }
                let lse = log_sum_exp(z);
                let p: Vec<f32> = z.iter().map(|&v| (v - lse).exp()).collect();
                match criterion {
                    UnsupCriterion::Mse => {
                        loss += p.iter().zip(t).map(|(&p, &t)| ((p - t) * (p - t)) as f64).sum::<f64>();
                        // d/dp of Σ(p−t)², then through the softmax: p ⊙ (g − Σ p·g)
                        let gp: Vec<f32> = p.iter().zip(t).map(|(&p, &t)| 2.0 * (p - t) * scale).collect();
                        let dot: f32 = p.iter().zip(&gp).map(|(a, b)| a * b).sum();
                        z.iter_mut().zip(p.iter().zip(&gp)).for_each(|(v, (&p, &gp))| *v = p * (gp - dot));
                    }
                    UnsupCriterion::Ce => {
                        loss += t.iter().zip(z.iter()).map(|(&t, &v)| t as f64 * (lse - v) as f64).sum::<f64>();
                        let total: f32 = t.iter().sum();
                        z.iter_mut().zip(p.iter().zip(t)).for_each(|(v, (&p, &t))| *v = (p * total - t) * scale);
                    }
                }
            }
            losses[2] = loss / nu as f64;
            losses[0] += weight * losses[2];
            // at weight 0 (the ramp's first epoch) or with no confident cell every gradient of this
            // pass is 0: only its forward counted (dropout draws, batch statistics)
            if weight != 0.0 && n_conf > 0 {
                let g_act = self.backward_output(&pass, &g);
                p.rows.scatter_add(&self.backward_blocks(&pass, g_act), width, &mut g_src);
            }
            all_stats.push(pass.stats);
        }

        let nl = l_pass.n;
        let mut g = l_logits;
        losses[1] = soft_ce_grad(&mut g, &sup.targets, c, sup.cell_weights.as_deref(), 1.0 / nl as f64);
        losses[0] += losses[1];
        let g_act = self.backward_output(&l_pass, &g);
        sup.rows.scatter_add(&self.backward_blocks(&l_pass, g_act), width, &mut g_src);
        all_stats.push(l_pass.stats);

        if let Some((pass, p)) = d {
            let adversary = self.dan.as_mut().expect("an adversary for the domain pass");
            let nd = pass.n;
            let last = pass.act.last().expect("a block");
            let emb = SparseAct::from_dense(last, nd, last.len() / nd.max(1));
            let (mut hidden, mut dl) = (Vec::new(), Vec::new());
            adversary.hidden.forward_sparse(&emb, &mut hidden);
            relu_in_place(&mut hidden);
            adversary.output.params.forward(&hidden, nd, &mut dl);
            let n_domains = adversary.output.params.n_out;
            losses[3] = soft_ce_grad(&mut dl, &p.domains, n_domains, None, p.scale / nd as f64);
            losses[0] += losses[3];
            let mut g_hidden = Vec::new();
            adversary.output.backward(&hidden, &dl, nd, &mut g_hidden);
            relu_grad_in_place(&mut g_hidden, &hidden);
            let mut g_emb = Vec::new();
            adversary.hidden.backward_sparse(&emb, &g_hidden, &mut g_emb);
            // gradient reversal: −w on the way back into the classifier
            let r = -p.reversal as f32;
            g_emb.iter_mut().for_each(|g| *g *= r);
            p.rows.scatter_add(&self.backward_blocks(&pass, g_emb), width, &mut g_src);
            all_stats.push(pass.stats);
        }
        self.first.add_grad(&sources, &(0..sources.n_rows).collect::<Vec<_>>(), &g_src, &mut self.first_grad);

        let lr = lr as f32;
        let optim = self.optim;
        optim.step_host(lr, self.first.params_mut().0, &self.first_grad.weight, &mut self.first_state.0);
        optim.step_host(lr, self.first.params_mut().1, &self.first_grad.bias, &mut self.first_state.1);
        self.first_grad.weight.fill(0.0);
        self.first_grad.bias.fill(0.0);
        self.dense.iter_mut().chain(self.dan.iter_mut().flat_map(|a| [&mut a.hidden, &mut a.output])).for_each(|d| d.step(&optim, lr));
        self.norms.iter_mut().for_each(|n| n.step(&optim, lr));
        let m = BN_MOMENTUM as f32;
        for stats in all_stats {
            for (norm, (mean, var)) in self.norms.iter_mut().zip(stats) {
                norm.running_mean.iter_mut().zip(&mean).for_each(|(r, &b)| *r = *r * (1.0 - m) + b * m);
                norm.running_var.iter_mut().zip(&var).for_each(|(r, &b)| *r = *r * (1.0 - m) + b * m);
            }
            self.bn_updates += 1;
        }
        losses
    }
}
