//! Supervised training of a classifier on CSR data, one densified minibatch at a time, and batched
//! prediction. Loss and accuracy are summed on the device and read once per epoch (async), so the
//! same loop runs on WebGPU, where synchronous reads are impossible.
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::{Device, Int, Tensor, TensorData};
use burn::tensor::activation::softmax;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::backend::Executor;
use crate::data::matrix::CsrMatrix;
use crate::data::sampler::{MinibatchSampler, Sampling};
use crate::error::{Result, SclabelError};
use crate::nn::host_mlp::{HostMlp, Scratch};
use crate::nn::mlp::{Mlp, MlpConfig};
use crate::train::progress::{Observer, Phase, Progress};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// PyTorch-style SGD: v = momentum·v + g (no dampening), p −= lr·v.
    Sgd {
        momentum: f64,
    },
    Adam,
}

/// Options of the plain-MLP training loop. Defaults are Annotatability's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    pub n_epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerConfig,
    pub sampling: Sampling,
    pub drop_last: bool,
    pub n_layers: usize,
    pub seed: u64,
    /// On CPU backends with SGD, train the network on the host (`HostMlp`: the first layer applied
    /// to the sparse rows, direct matrix products, no autodiff graph) instead of with burn's
    /// autodiff: the same maths, several times faster. `false` forces burn's path (comparisons).
    pub host_network: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            n_epochs: 50,
            batch_size: 256,
            lr: 1e-3,
            optimizer: OptimizerConfig::Sgd { momentum: 0.9 },
            sampling: Sampling::Balanced,
            drop_last: false,
            n_layers: 3,
            seed: 0,
            host_network: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's minibatches (before each step's update).
    pub loss: f32,
    /// Fraction of the epoch's sampled cells the model classified right (before each update).
    pub accuracy: f32,
}

fn optimizer(config: OptimizerConfig) -> ModuleOptimizer {
    match config {
        OptimizerConfig::Sgd { momentum } => {
            SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(momentum).with_dampening(0.0).with_nesterov(false))).init()
        }
        OptimizerConfig::Adam => AdamConfig::new().with_epsilon(1e-8).init(),
    }
}

/// Densifies the given rows into a `[rows, n_cols]` tensor on `device`.
pub fn batch_tensor(x: &CsrMatrix, rows: &[usize], buf: &mut Vec<f32>, device: &Device) -> Tensor<2> {
    x.densify_rows_into(rows, buf);
    Tensor::from_data(TensorData::new(std::mem::take(buf), [rows.len(), x.n_cols]), device)
}

fn label_tensor(labels: &[i32], rows: &[usize], device: &Device) -> Tensor<1, Int> {
    let y: Vec<i32> = rows.iter().map(|&r| labels[r]).collect();
    Tensor::from_data(TensorData::new(y, [rows.len()]), device)
}

/// Cells whose label probabilities are recorded before every epoch — Annotatability's training
/// dynamics. Snapshot 0 is the untrained network; the last epoch's updates are never measured.
pub struct Record<'a> {
    pub rows: &'a [usize],
    /// One or more label columns: per row of `x`, the class whose probability is recorded (a
    /// class of the model, ≥ 0, for every recorded row).
    pub labels: Vec<&'a [i32]>,
}

/// What `train_mlp` returns.
pub struct TrainedMlp {
    pub model: Mlp,
    /// Which executor trained it.
    pub executor: Executor,
    pub history: Vec<EpochStats>,
    /// Per recorded label column: the probabilities, epoch-major `[epochs × record.rows.len()]`.
    /// Empty without a `Record`.
    pub trajectories: Vec<Vec<f32>>,
}

/// Trains the plain MLP on `rows` of `x` (labels per row of `x`, −1 = unlabelled and skipped),
/// recording label probabilities before every epoch when asked. The records stay on the device
/// and are read back once, after training.
pub async fn train_mlp<O: Observer>(
    x: &CsrMatrix,
    labels: &[i32],
    n_classes: usize,
    rows: &[usize],
    options: &TrainOptions,
    record: Option<&Record<'_>>,
    device: &Device,
    observer: &mut O,
) -> Result<TrainedMlp> {
    if labels.len() != x.n_rows {
        return Err(SclabelError::shape(format!("{} labels for {} cells", labels.len(), x.n_rows)));
    }
    if options.lr.is_nan() || options.lr <= 0.0 {
        return Err(SclabelError::InvalidOption { option: "lr".into(), reason: "must be positive".into() });
    }
    if let Some(rec) = record {
        check_record(rec, x.n_rows, n_classes)?;
    }
    let rows: Vec<usize> = rows.iter().copied().filter(|&r| labels[r] >= 0).collect();
    let train_device = device.clone().autodiff();
    let model = MlpConfig { n_genes: x.n_cols, n_classes, n_layers: options.n_layers }.init(&train_device, options.seed)?;
    let executor = Executor::choose(device, options.host_network, matches!(options.optimizer, OptimizerConfig::Sgd { .. }));
    let mut net = match options.optimizer {
        OptimizerConfig::Sgd { momentum } if executor == Executor::Host => Net::Host { mlp: HostMlp::from_mlp(&model).await?, momentum: momentum as f32 },
        _ => Net::Device(model),
    };
    let mut optim = optimizer(options.optimizer);
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let mut sampler = MinibatchSampler::new(rows.clone(), Some(labels), options.sampling, options.batch_size, options.drop_last, options.seed)?;
    let steps_per_epoch = sampler.batches_per_epoch();
    let mut history = Vec::with_capacity(options.n_epochs);
    let (mut buf, mut scratch) = (Vec::new(), Scratch::default());
    // Per epoch, per label column: the recorded probabilities (on the device).
    let mut recorded: Vec<Vec<Tensor<1>>> = Vec::new();
    for epoch in 0..options.n_epochs {
        if let Some(rec) = record {
            recorded.push(match &net {
                Net::Device(model) => {
                    let model = model.valid();
                    label_probabilities(rec, device, |batch| model.forward(batch_tensor(x, batch, &mut buf, device)))
                }
                Net::Host { mlp, .. } => label_probabilities(rec, device, |batch| {
                    let logits = mlp.forward(x, batch, &mut scratch).to_vec();
                    Tensor::from_data(TensorData::new(logits, [batch.len(), mlp.n_classes()]), device)
                }),
            });
        }
        let batches = sampler.epoch();
        let mut loss_sum = Tensor::<1>::zeros([1], &train_device);
        let mut correct = Tensor::<1, Int>::zeros([1], &train_device);
        let mut seen = 0usize;
        // The host network's sums (the device's stay on the device until the epoch's one read).
        let (mut host_loss, mut host_correct) = (0f64, 0usize);
        for (step, batch) in batches.iter().enumerate() {
            net = match net {
                Net::Device(model) => {
                    let yb = label_tensor(labels, batch, &train_device);
                    let logits = model.forward(batch_tensor(x, batch, &mut buf, &train_device));
                    let loss = loss_fn.forward(logits.clone(), yb.clone());
                    correct = correct + logits.detach().argmax(1).squeeze_dim::<1>(1).equal(yb).int().sum();
                    loss_sum = loss_sum + loss.clone().detach();
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    Net::Device(optim.step(options.lr, model, grads))
                }
                Net::Host { mut mlp, momentum } => {
                    let stats = mlp.train_step(x, batch, labels, options.lr as f32, momentum, &mut scratch);
                    host_loss += stats.loss_sum / batch.len() as f64;
                    host_correct += stats.correct;
                    Net::Host { mlp, momentum }
                }
            };
            seen += batch.len();
            observer
                .on_progress(&Progress {
                    phase: Phase::Train,
                    epoch,
                    n_epochs: options.n_epochs,
                    step: step + 1,
                    steps_per_epoch,
                    cells_done: seen,
                    cells_total: rows.len(),
                    loss: None,
                    accuracy: None,
                })
                .await?;
        }
        let [l, c]: [TensorData; 2] = Transaction::default()
            .register(loss_sum)
            .register(correct)
            .execute_async()
            .await
            .map_err(|e| backend_error(device, e))?
            .try_into()
            .map_err(|_| SclabelError::Backend { backend: format!("{device:?}"), reason: "read returned the wrong number of tensors".into() })?;
        let (loss, correct) = match net {
            Net::Device(_) => (scalar_f32(l, device)?, scalar_f32(c, device)?),
            Net::Host { .. } => (host_loss as f32, host_correct as f32),
        };
        let loss = loss / batches.len().max(1) as f32;
        let accuracy = correct / seen.max(1) as f32;
        if !loss.is_finite() {
            return Err(SclabelError::values(format!("training diverged at epoch {epoch} (loss {loss}); lower the learning rate or check the input scale")));
        }
        history.push(EpochStats { epoch, loss, accuracy });
        observer
            .on_progress(&Progress {
                phase: Phase::Train,
                epoch,
                n_epochs: options.n_epochs,
                step: steps_per_epoch,
                steps_per_epoch,
                cells_done: seen,
                cells_total: rows.len(),
                loss: Some(loss),
                accuracy: Some(accuracy),
            })
            .await?;
    }
    let trajectories = match record {
        Some(rec) => read_trajectories(recorded, rec.labels.len(), device).await?,
        None => Vec::new(),
    };
    let model = match net {
        Net::Device(model) => model.valid(),
        Net::Host { mlp, .. } => mlp.to_mlp(device),
    };
    Ok(TrainedMlp { model, executor, history, trajectories })
}

fn check_record(rec: &Record<'_>, n_rows: usize, n_classes: usize) -> Result<()> {
    if let Some(&r) = rec.rows.iter().find(|&&r| r >= n_rows) {
        return Err(SclabelError::shape(format!("recorded row {r} is outside the {n_rows} cells")));
    }
    for labels in &rec.labels {
        if labels.len() != n_rows {
            return Err(SclabelError::shape(format!("{} recorded labels for {n_rows} cells", labels.len())));
        }
        if let Some(&r) = rec.rows.iter().find(|&&r| labels[r] < 0 || labels[r] as usize >= n_classes) {
            return Err(SclabelError::labels(format!("cell {r} has no class of the model to record (code {})", labels[r])));
        }
    }
    Ok(())
}

/// Rows per batch of the recording pass (inference only, so larger than training batches).
const RECORD_BATCH: usize = 1024;

/// The network in training: on the device (burn's autodiff and optimiser), or — on CPU backends
/// with SGD — on the host (`HostMlp`: the same maths, the first layer straight from the CSR rows
/// and the dense layers as direct matrix products).
enum Net {
    Device(Mlp),
    Host { mlp: HostMlp, momentum: f32 },
}

/// One snapshot: for each label column, the probability of that label for every recorded row,
/// left on the device. `logits` runs the network on a batch of rows.
fn label_probabilities(rec: &Record<'_>, device: &Device, mut logits: impl FnMut(&[usize]) -> Tensor<2>) -> Vec<Tensor<1>> {
    let mut parts: Vec<Vec<Tensor<1>>> = vec![Vec::new(); rec.labels.len()];
    for batch in rec.rows.chunks(RECORD_BATCH) {
        let p = softmax(logits(batch), 1);
        for (k, labels) in rec.labels.iter().enumerate() {
            let idx = label_tensor(labels, batch, device).reshape([batch.len(), 1]);
            parts[k].push(p.clone().gather(1, idx).reshape([batch.len()]));
        }
    }
    parts.into_iter().map(|p| Tensor::cat(p, 0)).collect()
}

/// Reads every snapshot of every label column in one transaction.
async fn read_trajectories(recorded: Vec<Vec<Tensor<1>>>, n_columns: usize, device: &Device) -> Result<Vec<Vec<f32>>> {
    if recorded.is_empty() {
        return Ok(vec![Vec::new(); n_columns]);
    }
    let mut per_column: Vec<Vec<Tensor<1>>> = vec![Vec::new(); n_columns];
    for snapshot in recorded {
        for (k, t) in snapshot.into_iter().enumerate() {
            per_column[k].push(t);
        }
    }
    let mut tx = Transaction::default();
    for column in per_column {
        tx = tx.register(Tensor::cat(column, 0));
    }
    let data = tx.execute_async().await.map_err(|e| backend_error(device, e))?;
    data.into_iter().map(|d| d.try_into_vec_as::<f32>().map_err(|e| backend_error(device, format!("{e:?}")))).collect()
}

/// Class probabilities for `rows`, row-major `[rows.len(), n_classes]`, computed in batches.
pub async fn predict_proba<O: Observer>(model: &Mlp, x: &CsrMatrix, rows: &[usize], batch_size: usize, device: &Device, observer: &mut O) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let n_batches = rows.len().div_ceil(batch_size.max(1));
    for (k, batch) in rows.chunks(batch_size.max(1)).enumerate() {
        let p = softmax(model.forward(batch_tensor(x, batch, &mut buf, device)), 1);
        let data = p.into_data_async().await.map_err(|e| backend_error(device, e))?;
        out.extend(data.try_into_vec_as::<f32>().map_err(|e| backend_error(device, format!("{e:?}")))?);
        observer.on_progress(&Progress::predicting(k + 1, n_batches, (k * batch_size + batch.len()).min(rows.len()), rows.len())).await?;
    }
    Ok(out)
}

fn scalar_f32(data: TensorData, device: &Device) -> Result<f32> {
    let v = data.try_into_vec_as::<f32>().map_err(|e| backend_error(device, format!("{e:?}")))?;
    v.first().copied().ok_or_else(|| backend_error(device, "empty read"))
}

fn backend_error(device: &Device, e: impl std::fmt::Display + std::fmt::Debug) -> SclabelError {
    SclabelError::Backend { backend: format!("{device:?}"), reason: format!("{e}") }
}
