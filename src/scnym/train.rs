//! scNym training: supervised, or MixMatch + domain adversary when there are unlabelled cells
//! (spec §3). Host work per step: sample rows, augment, MixUp (all from one seeded RNG, so every
//! backend sees the same draws). The student (`student`) does the forwards, losses, backward and
//! update: in burn on the device, or all on the host for CPU backends.
//! One async read per step (the teacher's pseudolabels, needed to pick the confident cells), one
//! per epoch for losses and validation.
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::Transaction;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::backend::Executor;
use crate::data::matrix::CsrMatrix;
use crate::data::row_blocks::RowSource;
use crate::data::sampler::{MinibatchSampler, Sampling};
use crate::error::{Result, SclabelError};
use crate::scnym::bundle::ScnymModel;
use crate::scnym::config::{Augmentation, OptimizerName, ScnymConfig};
use crate::scnym::finetune::Pretrained;
use crate::scnym::host_net::HostScnym;
use crate::scnym::model::{ArchSpec, BnState, DomainAdversary, Mode, ScnymNet};
use crate::scnym::ops::{class_weights, gather_rows, log1p_drop, mix_rows, ramp, sharpen, soft_cross_entropy, MixPlan};
use crate::scnym::step::{DanPass, RowMix, StepBatch, SupPass, UnsupPass};
use crate::scnym::student::{tensor2, BurnStudent, Student, Trainable};
use crate::train::adadelta::Adadelta;
use crate::train::progress::{Observer, Phase, Progress};

/// Which split a labelled cell belongs to (scNym's `scNym_split` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Trained on.
    Train,
    /// Model selection ("test" in scNym).
    Test,
    /// Final held-out evaluation ("val" in scNym).
    Val,
}

/// Prepared inputs: ln(CPM+1) values in the model's gene order, class codes (−1 = unlabelled),
/// a domain per cell.
pub struct TrainingData<'a> {
    /// A loaded matrix, or one held as compact blocks ([`crate::data::row_blocks::RowBlocks`]).
    pub x: &'a dyn RowSource,
    pub labels: &'a [i32],
    pub n_classes: usize,
    pub domains: &'a [u32],
    pub n_domains: usize,
    /// User-given splits for labelled cells (`None` entries: unlabelled). Random 81/9/10 if absent.
    pub splits: Option<&'a [Option<Split>]>,
}

use crate::scnym::metrics::{EpochRecord, TrainMetrics};

pub struct Trained {
    pub arch: ArchSpec,
    pub net: ScnymNet,
    pub bn: BnState,
    pub metrics: TrainMetrics,
}

/// Independent random streams from one user seed (init, splits, sampling, augmentation).
fn stream(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15u64.wrapping_mul(k + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Splits labelled cells into train / model selection / held-out.
pub fn make_splits(data: &TrainingData, config: &ScnymConfig) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
    let labelled: Vec<usize> = (0..data.labels.len()).filter(|&i| data.labels[i] >= 0).collect();
    let (train, test, val) = match data.splits {
        Some(splits) => {
            let mut t = (Vec::new(), Vec::new(), Vec::new());
            for &i in &labelled {
                match splits[i] {
                    Some(Split::Train) => t.0.push(i),
                    Some(Split::Test) => t.1.push(i),
                    Some(Split::Val) => t.2.push(i),
                    None => {}
                }
            }
            t
        }
        None => {
            let mut rng = StdRng::seed_from_u64(stream(config.seed, 1));
            let mut order = labelled.clone();
            order.shuffle(&mut rng);
            let n_val = (order.len() as f64 * config.holdout_fraction).round() as usize;
            let rest = order.len() - n_val;
            let n_test = (rest as f64 * config.model_selection_fraction).round() as usize;
            let val = order[..n_val].to_vec();
            let test = order[n_val..n_val + n_test].to_vec();
            let train = order[n_val + n_test..].to_vec();
            (train, test, val)
        }
    };
    if train.len() < 2 {
        return Err(SclabelError::labels(format!(
            "only {} labelled cells are left for training after the held-out splits; scNym needs at least 2 (it expects hundreds)",
            train.len()
        )));
    }
    Ok((train, test, val))
}

/// Unlabelled batches: shuffled passes with drop_last, cycled forever (scNym's unlabelled loader).
struct Cycler {
    rows: Vec<usize>,
    pos: usize,
    batch: usize,
}

impl Cycler {
    fn next(&mut self, rng: &mut StdRng) -> Vec<usize> {
        if self.pos == 0 || self.pos + self.batch > self.rows.len() {
            self.rows.shuffle(rng);
            self.pos = 0;
        }
        let b = self.rows[self.pos..self.pos + self.batch].to_vec();
        self.pos += self.batch;
        b
    }
}

fn one_hot(codes: impl Iterator<Item = usize>, n: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for c in codes {
        let start = out.len();
        out.resize(start + n, 0.0);
        out[start + c] = 1.0;
    }
    out
}

fn optimizer(config: &ScnymConfig) -> ModuleOptimizer {
    let wd = config.weight_decay;
    let decay = (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32));
    match config.optimizer_name {
        OptimizerName::Adadelta => adadelta(config).init(),
        OptimizerName::Adam => AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).init(),
        OptimizerName::Adamw => AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(wd as f32).init(),
        OptimizerName::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0).with_nesterov(false)))
            .with_weight_decay(decay)
            .init(),
    }
}

/// scNym's Adadelta: PyTorch's defaults, the config's weight decay.
fn adadelta(config: &ScnymConfig) -> Adadelta {
    Adadelta { rho: 0.9, eps: 1e-6, weight_decay: config.weight_decay }
}

/// Learning rate of an epoch: constant, or cosine annealing to lr/1e4 for SGD (as scNym).
fn epoch_lr(config: &ScnymConfig, epoch: usize) -> f64 {
    match config.optimizer_name {
        OptimizerName::Sgd => {
            let min = config.lr / 1e4;
            min + (config.lr - min) * (1.0 + (std::f64::consts::PI * epoch as f64 / config.n_epochs as f64).cos()) / 2.0
        }
        _ => config.lr,
    }
}

fn diverged() -> SclabelError {
    SclabelError::values("the model-selection loss is not finite: training diverged (lower the learning rate)")
}

/// Mean cross-entropy and accuracy of `net` on `rows` (eval mode), in batches.
async fn evaluate(
    net: &ScnymNet,
    bn: &BnState,
    arch: &ArchSpec,
    data: &TrainingData<'_>,
    rows: &[usize],
    batch: usize,
    device: &Device,
) -> Result<Option<(f32, f32)>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut loss = Tensor::<1>::zeros([1], device);
    let mut hits = Tensor::<1>::zeros([1], device);
    let mut buf = Vec::new();
    for chunk in rows.chunks(batch.max(1)) {
        data.x.take_rows(chunk).densify_rows_into(&(0..chunk.len()).collect::<Vec<_>>(), &mut buf);
        let xb = tensor2(std::mem::take(&mut buf), chunk.len(), data.x.n_cols(), device);
        let y = tensor2(one_hot(chunk.iter().map(|&r| data.labels[r] as usize), arch.n_classes), chunk.len(), arch.n_classes, device);
        let logits = net.forward(xb, 0.0, Mode::Eval(bn)).logits;
        loss = loss + soft_cross_entropy(logits.clone(), y.clone()).sum();
        let pred = logits.argmax(1).float();
        let truth = y.argmax(1).float();
        hits = hits + pred.equal(truth).float().sum();
    }
    let [l, h]: [TensorData; 2] = Transaction::default()
        .register(loss)
        .register(hits)
        .execute_async()
        .await
        .map_err(|e| SclabelError::backend(device, e))?
        .try_into()
        .map_err(|_| SclabelError::backend(device, "transaction returned the wrong number of tensors"))?;
    let l = l.try_into_vec_as::<f32>().map_err(|e| SclabelError::backend(device, e))?[0];
    let h = h.try_into_vec_as::<f32>().map_err(|e| SclabelError::backend(device, e))?[0];
    let n = rows.len() as f32;
    if !l.is_finite() {
        return Err(diverged());
    }
    Ok(Some((l / n, h / n)))
}

/// Trains an scNym model, from scratch or (fine-tuning) from `init`'s weights, whose architecture
/// then replaces the config's. `device` is the inner (non-autodiff) device.
pub async fn train<O: Observer>(
    data: &TrainingData<'_>,
    config: &ScnymConfig,
    init: Option<&Pretrained>,
    device: &Device,
    observer: &mut O,
) -> Result<Trained> {
    let n = data.x.n_rows();
    if data.labels.len() != n || data.domains.len() != n || data.splits.is_some_and(|s| s.len() != n) {
        return Err(SclabelError::shape(format!("labels, domains and splits must have one entry per cell ({n})")));
    }
    let arch = match init {
        Some(p) if p.arch.n_genes != data.x.n_cols() || p.arch.n_classes != data.n_classes => {
            return Err(SclabelError::shape(format!(
                "pretrained weights for {} genes × {} classes, data with {} × {}",
                p.arch.n_genes,
                p.arch.n_classes,
                data.x.n_cols(),
                data.n_classes
            )))
        }
        Some(p) => p.arch.clone(),
        None => ArchSpec::new(data.x.n_cols(), data.n_classes, &config.model_kwargs),
    };
    let (train_rows, test_rows, val_rows) = make_splits(data, config)?;
    let unlabeled: Vec<usize> = (0..n).filter(|&i| data.labels[i] < 0).collect();
    let unsup_max = config.effective_unsup_max_weight();
    let ssl = !unlabeled.is_empty() && (unsup_max != 0.0 || config.ssl_kwargs.dan_criterion);
    // Without unlabelled cells the adversary only has something to do with several domains.
    let use_dan = config.ssl_kwargs.dan_criterion && (ssl || data.n_domains > 1);
    let n_domains = data.n_domains.max(2);
    let ad = device.clone().autodiff();
    let (net, bn) = match init {
        // Built on the autodiff device: its parameters are then trainable leaves; the running
        // statistics are state, kept on the inner device like BnState::init's.
        Some(p) => {
            let m = ScnymModel::from_host_tensors(arch.clone(), &p.host, p.genes.clone(), p.classes.clone(), &ad)?;
            let inner = |v: Vec<Tensor<1>>| v.into_iter().map(|t| t.inner()).collect();
            (m.net, BnState { mean: inner(m.bn.mean), var: inner(m.bn.var), updates: m.bn.updates })
        }
        None => (ScnymNet::init(&arch, &ad, stream(config.seed, 0)), BnState::init(&arch, device)),
    };
    let dan = use_dan.then(|| DomainAdversary::with_domains(arch.n_hidden, n_domains, &ad, stream(config.seed, 0)));
    // CPU backends with the default options: the whole step on the host; burn's autodiff covers
    // the rest (WebGPU, input dropout, residual blocks, other optimisers, the mean teacher).
    let host_covers = config.optimizer_name == OptimizerName::Adadelta && arch.init_dropout == 0.0 && !arch.residual && !config.unsup_mean_teacher;
    let executor = Executor::choose(device, config.host_network, host_covers);
    let mut student = if executor == Executor::Host {
        Student::Host { net: Box::new(HostScnym::new(&net, dan.as_ref(), &bn, adadelta(config)).await?), sums: [0.0; 4] }
    } else {
        Student::Burn(Box::new(BurnStudent {
            model: Some(Trainable { net, dan }),
            optim: optimizer(config),
            bn,
            init_dropout: arch.init_dropout,
            mean_teacher: config.unsup_mean_teacher.then_some(config.ssl_kwargs.decay_coef),
            teacher: None,
            steps: 0,
            sums: None,
            device: ad.clone(),
        }))
    };
    let mut rng = StdRng::seed_from_u64(stream(config.seed, 2));

    let b = config.batch_size;
    // fix: scNym drops the last partial batch even when it is the only one (0 steps per epoch
    // with < 256 training cells); here an undersized training set is one batch.
    let drop_last = train_rows.len() >= b;
    let sampling = if config.balanced_classes { Sampling::Balanced } else { Sampling::Shuffle };
    let mut sampler = MinibatchSampler::new(train_rows.clone(), Some(data.labels), sampling, b.min(train_rows.len()), drop_last, stream(config.seed, 3))?;
    let mut cycler = Cycler { batch: b.min(unlabeled.len()), rows: unlabeled.clone(), pos: 0 };
    let weights = if config.weighted_classes {
        let mut counts = vec![0usize; arch.n_classes];
        train_rows.iter().for_each(|&r| counts[data.labels[r] as usize] += 1);
        Some(class_weights(&counts))
    } else {
        None
    };
    let min_epochs = config.min_epochs(ssl);
    let patience = config.patience.unwrap_or(config.n_epochs);
    let mode = match (ssl, use_dan) {
        (true, true) => "mixmatch+dan",
        (true, false) => "mixmatch",
        (false, true) => "supervised+dan",
        (false, false) => "supervised",
    };
    let mut metrics = TrainMetrics {
        mode: mode.into(),
        n_train: train_rows.len(),
        n_model_selection: test_rows.len(),
        n_holdout: val_rows.len(),
        n_unlabeled: unlabeled.len(),
        epochs: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
        final_accuracy: None,
        final_loss: None,
        executor: Some(executor),
    };
    let c = arch.n_classes;
    let mut best: Option<(ScnymNet, BnState, f32)> = None;
    let mut waiting = 0usize;
    let steps_per_epoch = sampler.batches_per_epoch();

    for epoch in 0..config.n_epochs {
        let lr = epoch_lr(config, epoch);
        let w_u = if ssl { ramp(epoch, config.ssl_kwargs.ramp_epochs, config.ssl_kwargs.burn_in_epochs, unsup_max, false) } else { 0.0 };
        let w_d = if use_dan {
            ramp(epoch, config.ssl_kwargs.dan_ramp_epochs, config.ssl_kwargs.dan_burn_in_epochs, config.ssl_kwargs.dan_max_weight, true)
        } else {
            0.0
        };
        let (mut n_conf_total, mut n_u_total) = (0usize, 0usize);
        let batches = sampler.epoch();
        for (step, lrows) in batches.iter().enumerate() {
            let nl = lrows.len();
            let mut xl = gather_rows(data.x, lrows);
            let yl = one_hot(lrows.iter().map(|&r| data.labels[r] as usize), c);
            let batch = if ssl {
                if config.ssl_kwargs.augment == Augmentation::Log1pDrop {
                    log1p_drop(&mut xl, 0.1, &mut rng);
                }
                let urows = cycler.next(&mut rng);
                let nu = urows.len();
                let xu = gather_rows(data.x, &urows);
                // (1) pseudolabels from an eval-mode teacher: the current model, or its EMA.
                let n_aug = config.ssl_kwargs.n_augmentations.max(1);
                let mut q = if config.ssl_kwargs.augment_pseudolabels && config.ssl_kwargs.augment == Augmentation::Log1pDrop {
                    let augmented: Vec<CsrMatrix> = (0..n_aug)
                        .map(|_| {
                            let mut a = xu.clone();
                            log1p_drop(&mut a, 0.1, &mut rng);
                            a
                        })
                        .collect();
                    student.teacher_probabilities(&augmented.iter().collect::<Vec<_>>()).await?
                } else {
                    // without augmentation every pass would see the same input
                    student.teacher_probabilities(&[&xu]).await?
                };
                // (2) confidence test, then sharpening.
                let tau = config.ssl_kwargs.pseudolabel_min_confidence as f32;
                let confident: Vec<bool> = q.chunks(c).map(|r| r.iter().cloned().fold(f32::MIN, f32::max) >= tau).collect();
                sharpen(&mut q, c, config.ssl_kwargs.t);
                let conf_idx: Vec<usize> = (0..nu).filter(|&i| confident[i]).collect();
                let unconf_idx: Vec<usize> = (0..nu).filter(|&i| !confident[i]).collect();
                let n_conf = conf_idx.len();
                n_conf_total += n_conf;
                n_u_total += nu;
                // (3) MixUp over the pool [confident unlabelled ; augmented labelled]: targets here,
                // inputs as row recipes over the sources [unlabelled ; augmented labelled].
                let src_of = |p: usize| if p < n_conf { conf_idx[p] } else { nu + p - n_conf };
                let plan = MixPlan::draw(n_conf + nl, config.mixup_alpha, &mut rng);
                let mut pool_y = Vec::with_capacity((n_conf + nl) * c);
                for &i in &conf_idx {
                    pool_y.extend_from_slice(&q[i * c..(i + 1) * c]);
                }
                pool_y.extend_from_slice(&yl);
                let mixed = |p: usize, rows: &mut RowMix| match &plan {
                    Some(plan) => rows.push(src_of(p), src_of(plan.perm[p]), plan.lambdas[p]),
                    None => rows.push_copy(src_of(p)),
                };
                let (mut u_rows, mut l_rows) = (RowMix::default(), RowMix::default());
                (0..n_conf).for_each(|p| mixed(p, &mut u_rows));
                (n_conf..n_conf + nl).for_each(|p| mixed(p, &mut l_rows));
                if let Some(plan) = &plan {
                    mix_rows(&mut pool_y, c, &plan.perm, &plan.lambdas);
                }
                unconf_idx.iter().for_each(|&i| u_rows.push_copy(i));
                let mut u_tgt = pool_y[..n_conf * c].to_vec();
                for &i in &unconf_idx {
                    u_tgt.extend_from_slice(&q[i * c..(i + 1) * c]);
                }
                let l_y = pool_y[n_conf * c..].to_vec();
                let cell_weights =
                    weights.as_ref().map(|w| l_y.chunks(c).map(|r| r.iter().zip(w).map(|(y, w)| y * w).fold(0f32, f32::max)).collect::<Vec<_>>());
                // (6) adversary on [augmented labelled ; unlabelled (confident or all)]
                let dan = use_dan.then(|| {
                    let du: Vec<usize> = if config.ssl_kwargs.dan_use_conf_pseudolabels { conf_idx.clone() } else { (0..nu).collect() };
                    let doms = lrows.iter().chain(du.iter().map(|&i| &urows[i])).map(|&r| data.domains[r] as usize);
                    let scale = if config.ssl_kwargs.dan_scale_loss_pseudoconf { n_conf as f64 / nu as f64 } else { 1.0 };
                    let rows = RowMix::copies((nu..nu + nl).chain(du.iter().copied()));
                    DanPass { rows, domains: one_hot(doms, n_domains), scale, reversal: w_d }
                });
                StepBatch {
                    sources: CsrMatrix::vstack(&[&xu, &xl])?,
                    unsup: Some(UnsupPass { rows: u_rows, targets: u_tgt, n_conf, criterion: config.ssl_kwargs.unsup_criterion, weight: w_u }),
                    sup: SupPass { rows: l_rows, targets: l_y, cell_weights },
                    dan,
                }
            } else {
                // Supervised: unaugmented, unmixed batches.
                let cell_weights = weights.as_ref().map(|w| lrows.iter().map(|&r| w[data.labels[r] as usize]).collect::<Vec<_>>());
                // fix: scNym's supervised multi-domain path applied softmax twice in its CE.
                let dan = use_dan.then(|| DanPass {
                    rows: RowMix::copies(0..nl),
                    domains: one_hot(lrows.iter().map(|&r| data.domains[r] as usize), n_domains),
                    scale: 1.0,
                    reversal: w_d,
                });
                StepBatch { sources: xl, unsup: None, sup: SupPass { rows: RowMix::copies(0..nl), targets: yl, cell_weights }, dan }
            };
            // (4)–(7): the passes, loss = sup + w_u·unsup + dan (the DAN weight acts only through
            // gradient reversal), backward, update.
            student.step(batch, lr, &mut rng);
            observer
                .on_progress(&Progress {
                    phase: Phase::Train,
                    epoch,
                    n_epochs: config.n_epochs,
                    step: step + 1,
                    steps_per_epoch,
                    cells_done: epoch * steps_per_epoch * b + (step + 1) * nl,
                    cells_total: config.n_epochs * steps_per_epoch * b,
                    loss: None,
                    accuracy: None,
                })
                .await?;
        }
        // End of epoch: one read for the losses, then model selection.
        let vals = student.take_epoch_losses(batches.len()).await?;
        if !vals[0].is_finite() {
            return Err(SclabelError::values(format!(
                "the training loss became {} in epoch {epoch}: training diverged (lower lr, check the input values)",
                vals[0]
            )));
        }
        let (net, bn) = student.snapshot(device);
        let labels: Vec<usize> = test_rows.iter().map(|&r| data.labels[r] as usize).collect();
        let val = match student.evaluate_on_host(data.x, &test_rows, &labels) {
            _ if test_rows.is_empty() => None,
            Some((loss, _)) if !loss.is_finite() => return Err(diverged()),
            Some(v) => Some(v),
            None => evaluate(&net, &bn, &arch, data, &test_rows, b, device).await?,
        };
        metrics.epochs.push(EpochRecord {
            epoch,
            loss: vals[0],
            sup_loss: vals[1],
            unsup_loss: vals[2],
            dan_loss: vals[3],
            unsup_weight: w_u,
            dan_weight: w_d,
            confident_fraction: if n_u_total > 0 { n_conf_total as f32 / n_u_total as f32 } else { 0.0 },
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
        });
        observer
            .on_progress(&Progress {
                phase: Phase::Train,
                epoch,
                n_epochs: config.n_epochs,
                step: steps_per_epoch,
                steps_per_epoch,
                cells_done: (epoch + 1) * steps_per_epoch * b,
                cells_total: config.n_epochs * steps_per_epoch * b,
                loss: Some(vals[0]),
                accuracy: val.map(|v| v.1),
            })
            .await?;
        waiting += 1;
        if let Some((val_loss, _)) = val {
            if epoch >= min_epochs && best.as_ref().is_none_or(|b| val_loss < b.2) {
                best = Some((net, bn, val_loss));
                metrics.best_epoch = epoch;
                waiting = 0;
            }
        }
        if waiting > patience {
            metrics.stopped_early = epoch + 1 < config.n_epochs;
            break;
        }
    }
    let (net, bn) = match best {
        Some((net, bn, _)) => (net, bn),
        None => {
            metrics.best_epoch = metrics.epochs.len().saturating_sub(1);
            student.snapshot(device)
        }
    };
    if let Some((loss, acc)) = evaluate(&net, &bn, &arch, data, &val_rows, b, device).await? {
        metrics.final_loss = Some(loss);
        metrics.final_accuracy = Some(acc);
    }
    Ok(Trained { arch, net, bn, metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_sizes_follow_scnym() {
        let x = CsrMatrix::from_dense(1000, 1, &vec![1.0; 1000]).unwrap();
        let mut labels = vec![0i32; 1000];
        labels[900..].iter_mut().for_each(|l| *l = -1); // 100 unlabelled
        let domains = vec![0u32; 1000];
        let data = TrainingData { x: &x, labels: &labels, n_classes: 1, domains: &domains, n_domains: 1, splits: None };
        let (train, test, val) = make_splits(&data, &ScnymConfig::default()).unwrap();
        // 900 labelled: 90 held out, 10% of 810 = 81 for model selection, 729 trained on
        assert_eq!((train.len(), test.len(), val.len()), (729, 81, 90));
        let mut all: Vec<usize> = train.iter().chain(&test).chain(&val).copied().collect();
        all.sort();
        assert_eq!(all, (0..900).collect::<Vec<_>>());
    }
}
