//! Prediction with a trained or imported model: probabilities, label, confidence (max probability),
//! an optional `Unassigned` label below a confidence threshold, and the embedding (`X_scnym`).
//! Streams from CSR in batches; one async read per batch.
use burn::prelude::{Device, Tensor, TensorData};
use burn::tensor::activation::softmax;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::backend::Executor;
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::io::h5ad_export::{DenseF32, H5adAdditions, ObsValues};
use crate::scnym::bundle::ScnymModel;
use crate::scnym::host_net::HostScnym;
use crate::scnym::model::Mode;
use crate::scnym::ops::argmax;
use crate::train::adadelta::Adadelta;
use crate::train::progress::{Observer, Progress};

pub const UNASSIGNED: &str = "Unassigned";

/// Options of a prediction, as every door takes them (JS `predictScnym`, `sclabel predict`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct PredictOptions {
    /// Convert X from whatever scale it is on to ln(CPM+1); otherwise input that is not ln(CPM+1)
    /// is refused, saying what it is.
    pub normalize: bool,
    /// Use `.raw` instead of X.
    pub use_raw: bool,
    /// Cells whose confidence is below this get the label `Unassigned` (`None`: always the argmax).
    pub unassigned_below: Option<f32>,
    /// Also return the embedding (cells × n_hidden).
    pub embedding: bool,
    pub batch_size: usize,
    /// An `.h5ad` predicted without being loaded: the var column with the gene names (a loaded
    /// data set has its own).
    pub var_names: Option<String>,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self { normalize: false, use_raw: false, unassigned_below: None, embedding: true, batch_size: 1024, var_names: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub classes: Vec<String>,
    /// Row-major [cells × classes].
    pub probabilities: Vec<f32>,
    /// Index of the most probable class per cell.
    pub predicted: Vec<u32>,
    /// Class name per cell (`Unassigned` below the threshold).
    pub labels: Vec<String>,
    /// Max probability per cell (scNym_confidence).
    pub confidence: Vec<f32>,
    /// Row-major [cells × embedding_dim] (X_scnym), when asked for.
    pub embedding: Option<Vec<f32>>,
    pub embedding_dim: usize,
    /// Which executor ran the network (see `backend::Executor`).
    pub executor: Executor,
}

/// The names scNym gives its outputs in an AnnData, used for them everywhere: the JS result's keys,
/// the CLI's CSV columns and the columns of an annotated `.h5ad`.
pub mod slots {
    /// `adata.obs`: the label of each cell (categorical).
    pub const LABELS: &str = "scNym";
    /// `adata.obs`: the largest probability of each cell.
    pub const CONFIDENCE: &str = "scNym_confidence";
    /// Cells × classes (scNym keeps them in `adata.uns`; a JS result and the CSV carry them).
    pub const PROBABILITIES: &str = "scNym_probabilities";
    /// `adata.obsm`: the embedding (cells × hidden units).
    pub const EMBEDDING: &str = "X_scnym";
}

impl Prediction {
    /// What scNym writes into an AnnData: obs `scNym`, `scNym_confidence`; obsm `X_scnym`.
    pub fn anndata_additions(self) -> H5adAdditions {
        prediction_additions(self.labels, self.confidence, self.embedding.map(|values| DenseF32 { n_cols: self.embedding_dim, values }))
    }
}

/// [`Prediction::anndata_additions`] from its parts (a prediction handed back by JS).
pub fn prediction_additions(labels: Vec<String>, confidence: Vec<f32>, embedding: Option<DenseF32>) -> H5adAdditions {
    H5adAdditions {
        obs: vec![
            (slots::LABELS.into(), ObsValues::Categorical(labels.into_iter().map(Some).collect())),
            (slots::CONFIDENCE.into(), ObsValues::F32(confidence)),
        ],
        obsm: embedding.map(|e| vec![(slots::EMBEDDING.into(), e)]).unwrap_or_default(),
    }
}

/// Runs `model` on `x`, whose columns are already the model's genes on its input scale.
pub async fn predict<O: Observer>(model: &ScnymModel, x: &CsrMatrix, options: &PredictOptions, device: &Device, observer: &mut O) -> Result<Prediction> {
    let mut parts = PredictionParts::new(model, options, x.n_rows)?;
    parts.add(model, x, device, observer).await?;
    parts.finish(model)
}

/// One worker's share of a prediction split by rows: `model` on `x` (rows prepared by
/// `api::prepare_prediction`), the outputs without labels, for [`PredictionParts::add_outputs`].
pub async fn predict_outputs<O: Observer>(
    model: &ScnymModel,
    x: &CsrMatrix,
    options: &PredictOptions,
    device: &Device,
    observer: &mut O,
) -> Result<PredictionOutputs> {
    let mut parts = PredictionParts::new(model, options, x.n_rows)?;
    parts.add(model, x, device, observer).await?;
    Ok(parts.into_outputs())
}

/// A prediction gathered a block of cells at a time (a matrix streamed from a file): memory is
/// the model, one block and the per-cell outputs. Progress counts cells done of all cells.
pub struct PredictionParts {
    options: PredictOptions,
    /// On CPU backends the network runs on the host (the first layer straight from the sparse
    /// input, as in training); made at the first block.
    host: Option<Box<HostScnym>>,
    total: usize,
    done: usize,
    probabilities: Vec<f32>,
    embedding: Option<Vec<f32>>,
    /// Which executor ran the network (set by the first cells in).
    executor: Option<Executor>,
}

/// The network's outputs for some cells, before labels: what one worker of a prediction split by
/// rows hands back ([`PredictionParts::into_outputs`], [`PredictionParts::add_outputs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionOutputs {
    /// cells × classes.
    pub probabilities: Vec<f32>,
    /// cells × embedding width, when asked for.
    pub embedding: Option<Vec<f32>>,
    pub executor: Executor,
}

impl PredictionParts {
    /// Ready for `total` cells.
    pub fn new(model: &ScnymModel, options: &PredictOptions, total: usize) -> Result<Self> {
        if let Some(t) = options.unassigned_below {
            if !(0.0..=1.0).contains(&t) {
                return Err(SclabelError::InvalidOption { option: "unassigned_below".into(), reason: "must be between 0 and 1".into() });
            }
        }
        let h = *model.arch.block_widths().last().expect("blocks");
        let per_cell = 4 * (model.arch.n_classes + if options.embedding { h } else { 0 }) + 40;
        crate::memory::reserve(
            &format!(
                "the prediction of {total} cells ({} classes{})",
                model.arch.n_classes,
                if options.embedding { format!(", a {h}-wide embedding") } else { String::new() }
            ),
            (total * per_cell) as u64,
            if options.embedding { "predict without the embedding (embedding: false), or fewer cells at a time" } else { "predict fewer cells at a time" },
        )?;
        Ok(Self {
            options: options.clone(),
            host: None,
            total,
            done: 0,
            probabilities: Vec::with_capacity(total * model.arch.n_classes),
            embedding: options.embedding.then(|| Vec::with_capacity(total * h)),
            executor: None,
        })
    }

    /// Predicts the next cells (`x`'s rows, the model's genes on its input scale).
    pub async fn add<O: Observer>(&mut self, model: &ScnymModel, x: &CsrMatrix, device: &Device, observer: &mut O) -> Result<()> {
        if x.n_cols != model.arch.n_genes {
            return Err(SclabelError::shape(format!("{} genes in the data, {} in the model (align them first)", x.n_cols, model.arch.n_genes)));
        }
        if self.done + x.n_rows > self.total {
            return Err(SclabelError::shape(format!("{} more cells after {} of {}", x.n_rows, self.done, self.total)));
        }
        let bs = self.options.batch_size.max(1);
        let n_batches = self.total.div_ceil(bs);
        if self.host.is_none() && Executor::choose(device, true, model.net.blocks.iter().all(|b| b.residual.is_none())) == Executor::Host {
            self.host = Some(Box::new(HostScnym::new(&model.net, None, &model.bn, Adadelta::default()).await?));
        }
        self.executor = Some(if self.host.is_some() { Executor::Host } else { Executor::Burn });
        if let Some(host) = &self.host {
            let rows: Vec<usize> = (0..x.n_rows).collect();
            for chunk in rows.chunks(bs) {
                let part = x.select_rows(chunk);
                self.probabilities.extend(host.predict(&part, self.embedding.as_mut()));
                self.done += chunk.len();
                observer.on_progress(&Progress::predicting(self.done.div_ceil(bs), n_batches, self.done, self.total)).await?;
            }
            return Ok(());
        }
        let mut buf = Vec::new();
        let rows: Vec<usize> = (0..x.n_rows).collect();
        for chunk in rows.chunks(bs) {
            x.densify_rows_into(chunk, &mut buf);
            let xb = Tensor::<2>::from_data(TensorData::new(std::mem::take(&mut buf), [chunk.len(), x.n_cols]), device);
            let f = model.net.forward(xb, 0.0, Mode::Eval(&model.bn));
            let mut tx = Transaction::default().register(softmax(f.logits, 1));
            if self.embedding.is_some() {
                tx = tx.register(f.embedding);
            }
            let mut out = tx.execute_async().await.map_err(|e| SclabelError::backend(device, e))?.into_iter();
            let mut read = |what: &str| -> Result<Vec<f32>> {
                out.next()
                    .ok_or_else(|| SclabelError::backend(device, format!("no {what} read back")))?
                    .try_into_vec_as::<f32>()
                    .map_err(|e| SclabelError::backend(device, e))
            };
            self.probabilities.extend(read("probabilities")?);
            if let Some(e) = self.embedding.as_mut() {
                e.extend(read("embedding")?);
            }
            self.done += chunk.len();
            observer.on_progress(&Progress::predicting(self.done.div_ceil(bs), n_batches, self.done, self.total)).await?;
        }
        Ok(())
    }

    /// The next cells' outputs, computed elsewhere by [`PredictionParts::add`] on their rows (another
    /// worker's share of a prediction split by rows): the same as adding those rows here.
    pub fn add_outputs(&mut self, model: &ScnymModel, outputs: PredictionOutputs) -> Result<()> {
        let c = model.arch.n_classes;
        let h = *model.arch.block_widths().last().expect("blocks");
        if !outputs.probabilities.len().is_multiple_of(c) {
            return Err(SclabelError::shape(format!("{} probabilities for {c} classes", outputs.probabilities.len())));
        }
        let n = outputs.probabilities.len() / c;
        if self.done + n > self.total {
            return Err(SclabelError::shape(format!("{n} more cells after {} of {}", self.done, self.total)));
        }
        match (self.embedding.as_mut(), outputs.embedding) {
            (Some(e), Some(o)) if o.len() == n * h => e.extend(o),
            (None, None) => {}
            (Some(_), o) => return Err(SclabelError::shape(format!("an embedding of {} values for {n} cells × {h}", o.map_or(0, |o| o.len())))),
            (None, Some(_)) => return Err(SclabelError::shape("an embedding that was not asked for".to_string())),
        }
        self.probabilities.extend(outputs.probabilities);
        self.done += n;
        self.executor = Some(outputs.executor);
        Ok(())
    }

    /// The outputs gathered so far, without labels (a worker's share, for `add_outputs` elsewhere).
    pub fn into_outputs(self) -> PredictionOutputs {
        PredictionOutputs { probabilities: self.probabilities, embedding: self.embedding, executor: self.executor.unwrap_or(Executor::Burn) }
    }

    /// Labels and confidences once every cell is in.
    pub fn finish(self, model: &ScnymModel) -> Result<Prediction> {
        if self.done != self.total {
            return Err(SclabelError::shape(format!("{} of {} cells predicted", self.done, self.total)));
        }
        let c = model.arch.n_classes;
        let h = *model.arch.block_widths().last().expect("blocks");
        let probabilities = self.probabilities;
        if let Some(i) = probabilities.iter().position(|p| !p.is_finite()) {
            return Err(SclabelError::values(format!("the model produced a non-finite probability for cell {}; check the input values", i / c)).at_row(i / c));
        }
        let predicted: Vec<u32> = probabilities.chunks(c).map(|p| argmax(p) as u32).collect();
        let confidence: Vec<f32> = probabilities.chunks(c).zip(&predicted).map(|(p, &k)| p[k as usize]).collect();
        let labels = predicted
            .iter()
            .zip(&confidence)
            .map(|(&k, &conf)| match self.options.unassigned_below {
                Some(t) if conf < t => UNASSIGNED.to_string(),
                _ => model.classes[k as usize].clone(),
            })
            .collect();
        let executor = self.executor.unwrap_or(Executor::Burn);
        Ok(Prediction { classes: model.classes.clone(), probabilities, predicted, labels, confidence, embedding: self.embedding, embedding_dim: h, executor })
    }
}
