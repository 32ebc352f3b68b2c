//! Expected-gradient gene attributions (scNym's `scnym_interpret`, spec §6): which genes push cells
//! towards a class, relative to a reference population. For a cell x, references r from a pool and
//! α ~ U(0, 1): a = E[(x − r) ⊙ ∂z_c/∂x̃ at x̃ = r + α(x − r)], z_c the target class's pre-softmax
//! logit. Departures from scNym, on purpose: signed (x − r) by default (canonical expected
//! gradients, so Σ_g a_g ≈ z_c(x) − E_r z_c(r); `abs_scale` gives scNym's |x − r|), no cells dropped
//! after the last full batch of 512, and every draw seeded on the host (same result on every backend).
//!
//! All draws of a target batch run as one stacked forward/backward (chunked to bound memory), the
//! attribution sum stays on the device, and there is one async read per target batch.
use burn::module::Module;
use burn::prelude::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::backend::ComputeDevice;
use crate::data::align::GeneOverlap;
use crate::data::anndata::AnnData;
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::io::h5ad::H5adRows;
use crate::scnym::api::{model_input, StreamedInput};
use crate::scnym::bundle::ScnymModel;
use crate::scnym::model::Mode;
use crate::train::progress::{Observer, Progress};

/// Most values in one [rows × genes] tensor of a chunk (32 MiB of f32): a handful of such tensors
/// are alive during a chunk's forward/backward, which must fit wasm memory and WebGPU buffer limits.
const MAX_CHUNK_VALUES: usize = 1 << 23;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct ExplainOptions {
    /// Class whose logit is explained; the cells explained are those labelled with it.
    pub target: String,
    /// Reference cells: a class name, or `None` / `"all"` for every cell not of the target class.
    pub source: Option<String>,
    /// Reference draws (with one α each) per cell; scNym's `n_batches`.
    pub n_samples: usize,
    /// Target cells per batch (capped so a batch of genes stays within the chunk limit).
    pub batch_size: usize,
    /// scNym's |x − r| instead of the signed difference (then attributions no longer add up to
    /// the logit difference, and a gene can't be credited with pushing away from the class).
    pub abs_scale: bool,
    /// Explain a seeded random subset of this many target cells (all when `None` or larger).
    pub n_cells: Option<usize>,
    pub seed: u64,
    /// Convert X to ln(CPM+1) first (as prediction's `normalize`); otherwise other scales are refused.
    pub normalize: bool,
    /// Use `.raw` instead of X.
    pub use_raw: bool,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        Self {
            target: String::new(),
            source: None,
            n_samples: 100,
            batch_size: 512,
            abs_scale: false,
            n_cells: None,
            seed: 0,
            normalize: false,
            use_raw: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The model's genes (columns of `attributions`).
    pub genes: Vec<String>,
    /// Rows of the input that were explained, ascending (rows of `attributions`).
    pub cells: Vec<usize>,
    /// Row-major [cells × genes]: mean attribution over the draws.
    pub attributions: Vec<f32>,
    /// Per gene: mean attribution over the cells (scNym's `saliency`, before sorting).
    pub saliency: Vec<f32>,
    /// Gene indices by saliency, most positive first.
    pub ranking: Vec<usize>,
    /// The explained class.
    pub target: String,
    pub n_samples: usize,
    pub abs_scale: bool,
    /// Things worth knowing about the input (low gene overlap …).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Independent random streams from one seed (cell subset, reference and α draws).
fn stream(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(0xA076_1D64_78BD_642Fu64.wrapping_mul(k + 1));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` reference rows: without replacement when the pool is large enough, else with.
fn draw_references(pool: &[usize], n: usize, rng: &mut StdRng, out: &mut Vec<usize>) {
    if pool.len() >= n {
        out.extend(sample(rng, pool.len(), n).into_iter().map(|i| pool[i]));
    } else {
        out.extend((0..n).map(|_| pool[rng.random_range(0..pool.len())]));
    }
}

fn invalid(option: &str, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidOption { option: option.into(), reason: reason.into() }
}

/// Expected gradients of class `target_class`'s logit for `target_rows` of `x` (already aligned to
/// the model's genes, on its input scale) against references drawn from `reference_rows`.
/// Target rows are explained once each, in ascending order. `options.target` / `source` are not
/// read here: they are for [`explain_adata`], which picks the rows.
#[allow(clippy::too_many_arguments)]
pub async fn expected_gradients<O: Observer>(
    model: &ScnymModel,
    x: &CsrMatrix,
    target_rows: &[usize],
    reference_rows: &[usize],
    target_class: usize,
    options: &ExplainOptions,
    device: &Device,
    observer: &mut O,
) -> Result<Explanation> {
    explain_chunked(model, x, target_rows, reference_rows, target_class, options, device, observer, MAX_CHUNK_VALUES, &|r| r).await
}

#[allow(clippy::too_many_arguments)]
async fn explain_chunked<O: Observer>(
    model: &ScnymModel,
    x: &CsrMatrix,
    target_rows: &[usize],
    reference_rows: &[usize],
    target_class: usize,
    options: &ExplainOptions,
    device: &Device,
    observer: &mut O,
    max_chunk_values: usize,
    // The caller's row for a row of `x` (messages name the file's row when `x` holds some of them).
    row_of: &dyn Fn(usize) -> usize,
) -> Result<Explanation> {
    let g = x.n_cols;
    if g != model.arch.n_genes {
        return Err(SclabelError::shape(format!("{g} genes in the data, {} in the model (align them first)", model.arch.n_genes)));
    }
    if target_class >= model.arch.n_classes {
        return Err(invalid("target", format!("class index {target_class} is out of range for a model with {} classes", model.arch.n_classes)));
    }
    check_counts(options)?;
    if target_rows.is_empty() {
        return Err(SclabelError::labels("no target cells to explain"));
    }
    if reference_rows.is_empty() {
        return Err(SclabelError::labels("the reference pool is empty"));
    }
    if let Some(&r) = target_rows.iter().chain(reference_rows).find(|&&r| r >= x.n_rows) {
        return Err(SclabelError::shape(format!("row {r} is out of range for {} cells", x.n_rows)));
    }
    let cells = explained_cells(target_rows, options);
    let plain = device.clone().inner();
    // A plain copy of the weights: as constants in the graph, backward computes input gradients only.
    let net = model.net.valid();
    let n_total = cells.len();
    let b = options.batch_size.max(1).min(n_total).min((max_chunk_values / g.max(1)).max(1));
    let per_chunk = (max_chunk_values / (b * g.max(1))).clamp(1, options.n_samples);
    let chunks_per_batch = options.n_samples.div_ceil(per_chunk);
    let n_steps = n_total.div_ceil(b) * chunks_per_batch;
    let mut rng = StdRng::seed_from_u64(stream(options.seed, 1));
    let mut attributions = Vec::with_capacity(n_total * g);
    let (mut xbuf, mut rbuf) = (Vec::new(), Vec::new());
    let mut step = 0;
    for (k, batch) in cells.chunks(b).enumerate() {
        let nb = batch.len();
        x.densify_rows_into(batch, &mut xbuf);
        let xb = Tensor::<2>::from_data(TensorData::new(std::mem::take(&mut xbuf), [nb, g]), &plain);
        let mut sum: Option<Tensor<2>> = None;
        let mut done = 0;
        while done < options.n_samples {
            let ks = per_chunk.min(options.n_samples - done);
            let rows = ks * nb;
            // Draws sample by sample, so chunking doesn't change which references a cell gets.
            let mut refs = Vec::with_capacity(rows);
            let mut alpha = Vec::with_capacity(rows);
            for _ in 0..ks {
                draw_references(reference_rows, nb, &mut rng, &mut refs);
                alpha.extend((0..nb).map(|_| rng.random::<f32>()));
            }
            x.densify_rows_into(&refs, &mut rbuf);
            let r = Tensor::<2>::from_data(TensorData::new(std::mem::take(&mut rbuf), [rows, g]), &plain);
            let a = Tensor::<2>::from_data(TensorData::new(alpha, [rows, 1]), &plain);
            // Rows are sample-major: row s·nb + i is cell i's s-th draw.
            let diff = xb.clone().repeat_dim(0, ks) - r.clone();
            let mixed = (r + diff.clone() * a).autodiff().require_grad();
            let logits = net.forward(mixed.clone(), 0.0, Mode::Eval(&model.bn)).logits;
            // Cells don't interact in eval mode, so the gradient of the summed logit is per cell.
            let grads = logits.narrow(1, target_class, 1).sum().backward();
            let grad = mixed.grad(&grads).ok_or_else(|| SclabelError::backend(device, "no input gradient after backward"))?;
            let scale = if options.abs_scale { diff.abs() } else { diff };
            let part = (scale * grad).reshape([ks, nb, g]).sum_dims_squeeze::<2, _>(&[0]);
            sum = Some(match sum {
                Some(s) => s + part,
                None => part,
            });
            done += ks;
            step += 1;
            let cells_done = k * b + if done == options.n_samples { nb } else { 0 };
            observer.on_progress(&Progress::predicting(step, n_steps, cells_done, n_total)).await?;
        }
        let mean = sum.expect("n_samples ≥ 1") / options.n_samples as f64;
        let values = mean
            .into_data_async()
            .await
            .map_err(|e| SclabelError::backend(device, e))?
            .try_into_vec_as::<f32>()
            .map_err(|e| SclabelError::backend(device, e))?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(SclabelError::values(format!(
                "non-finite attribution for cell {} (row {}); check the input values",
                k * b + i / g,
                row_of(batch[i / g])
            )));
        }
        attributions.extend(values);
    }
    let mut saliency = vec![0f64; g];
    for row in attributions.chunks(g) {
        saliency.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
    }
    let saliency: Vec<f32> = saliency.iter().map(|s| (s / n_total as f64) as f32).collect();
    let mut ranking: Vec<usize> = (0..g).collect();
    ranking.sort_by(|&i, &j| saliency[j].total_cmp(&saliency[i]));
    Ok(Explanation {
        genes: model.genes.clone(),
        cells,
        attributions,
        saliency,
        ranking,
        target: model.classes[target_class].clone(),
        n_samples: options.n_samples,
        abs_scale: options.abs_scale,
        warnings: Vec::new(),
    })
}

fn class_index(model: &ScnymModel, name: &str, option: &str) -> Result<usize> {
    if name.is_empty() {
        return Err(invalid(option, "no class given"));
    }
    model
        .classes
        .iter()
        .position(|c| c == name)
        .ok_or_else(|| invalid(option, format!("'{name}' is not one of the model's classes ({})", model.classes.join(", "))))
}

/// Most reference cells an explanation of a file read block by block keeps (a seeded sample of a
/// bigger pool): the references are a distribution to draw from, 10,000 cells estimate it well, and
/// they are held with the explained cells. In memory ([`explain_adata`]) the whole pool is used.
pub const MAX_STREAMED_REFERENCES: usize = 10_000;

/// The explained cells and the reference pool, from one label per cell (`what` names where the
/// labels come from, for messages: "obs column 'cell_type'", "the labels given").
fn pick_cells(model: &ScnymModel, labels: &[Option<String>], what: &str, options: &ExplainOptions) -> Result<(usize, Vec<usize>, Vec<usize>)> {
    let target_class = class_index(model, &options.target, "target")?;
    let source = options.source.as_deref().filter(|s| *s != "all");
    if let Some(s) = source {
        class_index(model, s, "source")?;
    }
    let is = |i: usize, name: &str| labels[i].as_deref() == Some(name);
    let target_rows: Vec<usize> = (0..labels.len()).filter(|&i| is(i, &options.target)).collect();
    if target_rows.is_empty() {
        return Err(SclabelError::labels(format!("no cell has '{}' in {what}", options.target)));
    }
    let reference_rows: Vec<usize> = match source {
        Some(s) => (0..labels.len()).filter(|&i| is(i, s)).collect(),
        None => (0..labels.len()).filter(|&i| !is(i, &options.target)).collect(),
    };
    if reference_rows.is_empty() {
        return Err(SclabelError::labels(match source {
            Some(s) => format!("no cell has '{s}' in {what}, so there are no reference cells"),
            None => format!("every cell is '{}' in {what}, so there are no reference cells", options.target),
        }));
    }
    Ok((target_class, target_rows, reference_rows))
}

fn check_counts(options: &ExplainOptions) -> Result<()> {
    if options.n_samples == 0 {
        return Err(invalid("n_samples", "must be at least 1"));
    }
    if options.n_cells == Some(0) {
        return Err(invalid("n_cells", "must be at least 1 (or unset for all target cells)"));
    }
    Ok(())
}

/// The target cells explained: all, or a seeded subset of `n_cells` (ascending).
fn explained_cells(target_rows: &[usize], options: &ExplainOptions) -> Vec<usize> {
    let mut cells = target_rows.to_vec();
    cells.sort_unstable();
    cells.dedup();
    match options.n_cells {
        Some(n) if n > 0 && n < cells.len() => seeded_subset(&cells, n, stream(options.seed, 0)),
        _ => cells,
    }
}

/// `n` of `rows` (fewer than its length), drawn with `seed`, ascending.
fn seeded_subset(rows: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked: Vec<usize> = sample(&mut rng, rows.len(), n).into_iter().map(|i| rows[i]).collect();
    picked.sort_unstable();
    picked
}

fn overlap_warning(overlap: &GeneOverlap) -> Option<String> {
    overlap.low_warning("missing genes are set to 0 and get no attribution")
}

/// Explains the cells with `obs[label_key] == options.target` against the reference cells picked by
/// `options.source`, after aligning genes to the model and checking / normalising the input scale
/// as prediction does. `cells` in the result are rows of `adata`.
pub async fn explain_adata<O: Observer>(
    adata: &AnnData,
    model: &ScnymModel,
    label_key: &str,
    options: &ExplainOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<Explanation> {
    let labels = adata.obs.get(label_key)?.to_strings();
    explain_labelled(adata, model, &labels, &format!("obs column '{label_key}'"), options, device, observer).await
}

/// [`explain_adata`] with one label per cell given by the caller (e.g. a prediction's `scNym`)
/// instead of an obs column.
pub async fn explain_labelled<O: Observer>(
    adata: &AnnData,
    model: &ScnymModel,
    labels: &[Option<String>],
    what: &str,
    options: &ExplainOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<Explanation> {
    if labels.len() != adata.n_obs() {
        return Err(SclabelError::shape(format!("{} labels for {} cells", labels.len(), adata.n_obs())));
    }
    let (target_class, target_rows, reference_rows) = pick_cells(model, labels, what, options)?;
    let (x, _, overlap) = model_input(model, adata, options.normalize, options.use_raw)?;
    let mut explanation = expected_gradients(model, &x, &target_rows, &reference_rows, target_class, options, &device.device, observer).await?;
    explanation.warnings = overlap_warning(&overlap).into_iter().collect();
    Ok(explanation)
}

/// [`explain_labelled`] on an `.h5ad` read a block of cells at a time, never whole (`use_raw` is
/// chosen when `rows` is opened): only the explained cells and the reference cells are kept, with
/// the model's genes — at most [`MAX_STREAMED_REFERENCES`] of them, a seeded sample of a bigger
/// pool (the result says so). With a pool that small, the result equals [`explain_labelled`]'s on
/// the file loaded whole. `cells` in the result are rows of the file.
pub async fn explain_h5ad_rows<O: Observer>(
    rows: &H5adRows,
    model: &ScnymModel,
    labels: &[Option<String>],
    what: &str,
    options: &ExplainOptions,
    device: &ComputeDevice,
    observer: &mut O,
) -> Result<Explanation> {
    if labels.len() != rows.n_rows {
        return Err(SclabelError::shape(format!("{} labels for {} cells", labels.len(), rows.n_rows)));
    }
    // Checked before the passes over the file (expected_gradients checks them again).
    check_counts(options)?;
    let (target_class, target_rows, mut pool) = pick_cells(model, labels, what, options)?;
    let cells = explained_cells(&target_rows, options);
    let mut warnings = Vec::new();
    if pool.len() > MAX_STREAMED_REFERENCES {
        warnings.push(format!(
            "reference cells: a seeded random sample of {MAX_STREAMED_REFERENCES} of the {} in the pool (a file read block by block keeps at most {MAX_STREAMED_REFERENCES})",
            pool.len()
        ));
        pool = seeded_subset(&pool, MAX_STREAMED_REFERENCES, stream(options.seed, 2));
    }
    let mut wanted: Vec<usize> = cells.iter().chain(&pool).copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let input = StreamedInput::new(model, rows, options.normalize)?;
    let x = input.read_selected(rows, &wanted)?;
    let local = |r: &usize| wanted.binary_search(r).expect("wanted holds every picked row");
    let (cells_local, pool_local): (Vec<usize>, Vec<usize>) = (cells.iter().map(local).collect(), pool.iter().map(local).collect());
    let row_of = |r: usize| wanted[r];
    let mut explanation =
        explain_chunked(model, &x, &cells_local, &pool_local, target_class, options, &device.device, observer, MAX_CHUNK_VALUES, &row_of).await?;
    // Local rows are in the file's order, so the explained cells stay ascending.
    explanation.cells.iter_mut().for_each(|c| *c = wanted[*c]);
    explanation.warnings = overlap_warning(&input.overlap).into_iter().chain(warnings).collect();
    Ok(explanation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cpu, BackendRequest};
    use crate::block_on;
    use crate::data::synthetic::{synthetic_counts, SyntheticSpec};
    use crate::scnym::bundle::{InputSpec, Provenance};
    use crate::scnym::config::ModelKwargs;
    use crate::scnym::model::{ArchSpec, BnState, ScnymNet};
    use crate::train::progress::{FnObserver, Silent};

    fn device() -> Device {
        cpu(BackendRequest::Cpu, "test").unwrap().device
    }

    fn tiny_model(n_genes: usize, classes: &[&str], device: &Device) -> ScnymModel {
        let kw = ModelKwargs { n_hidden: 16, n_hidden_init: 24, n_layers: 2, init_dropout: 0.0, residual: false };
        let arch = ArchSpec::new(n_genes, classes.len(), &kw);
        ScnymModel {
            net: ScnymNet::init(&arch, device, 7),
            bn: random_bn(&arch, device),
            genes: (0..n_genes).map(|g| format!("gene_{g}")).collect(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            arch,
            input: InputSpec::default(),
            config: None,
            metrics: None,
            provenance: Provenance::default(),
        }
    }

    /// Running statistics that shift and amplify (BN's init of 0 / 1 leaves logits nearly flat and
    /// the ReLUs nearly linear, which would make the checks below weak).
    fn random_bn(arch: &ArchSpec, device: &Device) -> BnState {
        let mut rng = StdRng::seed_from_u64(11);
        let mut bn = BnState::init(arch, device);
        for (m, v) in bn.mean.iter_mut().zip(bn.var.iter_mut()) {
            let w = m.dims()[0];
            let mean: Vec<f32> = (0..w).map(|_| rng.random_range(-0.3..0.3)).collect();
            let var: Vec<f32> = (0..w).map(|_| rng.random_range(0.02..0.1)).collect();
            *m = Tensor::from_data(TensorData::new(mean, [w]), device);
            *v = Tensor::from_data(TensorData::new(var, [w]), device);
        }
        bn
    }

    /// Sparse-ish values on a log scale (about a third zeros).
    fn random_matrix(n: usize, g: usize, seed: u64) -> CsrMatrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..n * g).map(|_| if rng.random::<f32>() < 0.35 { 0.0 } else { rng.random::<f32>() * 3.0 }).collect();
        CsrMatrix::from_dense(n, g, &v).unwrap()
    }

    /// z_c of every row, computed directly.
    fn logit(model: &ScnymModel, x: &CsrMatrix, c: usize, device: &Device) -> Vec<f32> {
        let mut buf = Vec::new();
        let rows: Vec<usize> = (0..x.n_rows).collect();
        x.densify_rows_into(&rows, &mut buf);
        let t = Tensor::<2>::from_data(TensorData::new(buf, [x.n_rows, x.n_cols]), device);
        let l = model.net.forward(t, 0.0, Mode::Eval(&model.bn)).logits;
        let l: Vec<f32> = block_on(l.into_data_async()).unwrap().try_into_vec_as::<f32>().unwrap();
        l.chunks(model.arch.n_classes).map(|r| r[c]).collect()
    }

    fn run(model: &ScnymModel, x: &CsrMatrix, t: &[usize], r: &[usize], c: usize, o: &ExplainOptions, d: &Device) -> Result<Explanation> {
        block_on(expected_gradients(model, x, t, r, c, o, d, &mut Silent))
    }

    fn row_sums(e: &Explanation) -> Vec<f32> {
        e.attributions.chunks(e.genes.len()).map(|r| r.iter().sum()).collect()
    }

    /// Largest |Σ_g a_ig − (z_c(x_i) − mean_r z_c(r))| over the explained cells, relative to the
    /// largest |z_c(x_i) − mean_r z_c(r)|.
    fn completeness_error(n_refs: usize, n_samples: usize) -> f32 {
        let d = device();
        let (g, c) = (12, 1);
        let model = tiny_model(g, &["a", "b", "c"], &d);
        let x = random_matrix(6 + n_refs, g, 3);
        let targets: Vec<usize> = (0..6).collect();
        let refs: Vec<usize> = (6..6 + n_refs).collect();
        let z = logit(&model, &x, c, &d);
        let z_ref = refs.iter().map(|&r| z[r]).sum::<f32>() / n_refs as f32;
        let want: Vec<f32> = targets.iter().map(|&i| z[i] - z_ref).collect();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 1.0, "the logit differences are too small for a meaningful check: {want:?}");
        let o = ExplainOptions { n_samples, batch_size: 4, ..Default::default() };
        let got = row_sums(&run(&model, &x, &targets, &refs, c, &o, &d).unwrap());
        eprintln!("{n_refs} reference(s), {n_samples} samples: Σ attributions {got:?}, logit differences {want:?}");
        got.iter().zip(&want).map(|(a, w)| (a - w).abs()).fold(0f32, f32::max) / scale
    }

    #[test]
    fn attributions_add_up_to_the_logit_difference_with_one_reference() {
        // Only the α integral is Monte-Carlo here. A single draw (the gradient at one point of the
        // path) must miss: the model is not linear along the path, so the check has teeth.
        assert!(completeness_error(1, 4000) < 0.03);
        assert!(completeness_error(1, 1) > 0.1);
    }

    #[test]
    fn attributions_add_up_to_the_logit_difference_over_a_reference_pool() {
        assert!(completeness_error(5, 20000) < 0.05);
    }

    #[test]
    fn abs_scale_uses_the_absolute_difference() {
        // With one reference both runs see the same α draws, so the mean gradient per gene is the
        // same and |x − r| ⊙ ḡ must equal sign(x − r) · ((x − r) ⊙ ḡ) gene by gene.
        let d = device();
        let g = 12;
        let model = tiny_model(g, &["a", "b", "c"], &d);
        let x = random_matrix(5, g, 4);
        let (targets, refs) = ([0, 1, 2, 3], [4]);
        let signed = run(&model, &x, &targets, &refs, 2, &ExplainOptions { n_samples: 50, ..Default::default() }, &d).unwrap();
        let abs = run(&model, &x, &targets, &refs, 2, &ExplainOptions { n_samples: 50, abs_scale: true, ..Default::default() }, &d).unwrap();
        assert!(abs.abs_scale && !signed.abs_scale);
        let mut dense = Vec::new();
        x.densify_rows_into(&[0, 1, 2, 3, 4], &mut dense);
        let r = &dense[4 * g..];
        let mut flipped = 0;
        for (i, (a_abs, a_signed)) in abs.attributions.chunks(g).zip(signed.attributions.chunks(g)).enumerate() {
            for j in 0..g {
                let diff = dense[i * g + j] - r[j];
                let want = if diff < 0.0 { -a_signed[j] } else { a_signed[j] };
                assert!((a_abs[j] - want).abs() <= 1e-6 * (1.0 + want.abs()), "cell {i} gene {j}: {} vs {want}", a_abs[j]);
                flipped += usize::from(diff < 0.0 && a_signed[j].abs() > 1e-4);
            }
        }
        assert!(flipped > 5, "too few genes with x < r to tell the variants apart");
    }

    #[test]
    fn every_target_cell_is_explained_and_chunking_changes_nothing() {
        let d = device();
        let g = 8;
        let model = tiny_model(g, &["a", "b"], &d);
        let x = random_matrix(760, g, 5);
        let targets: Vec<usize> = (0..700).rev().collect();
        let refs: Vec<usize> = (700..760).collect();
        let o = ExplainOptions { n_samples: 3, batch_size: 512, ..Default::default() };
        let mut events = Vec::new();
        let e = block_on(expected_gradients(
            &model,
            &x,
            &targets,
            &refs,
            0,
            &o,
            &d,
            &mut FnObserver(|p: &Progress| {
                events.push((p.step, p.steps_per_epoch, p.cells_done, p.cells_total));
                Ok(())
            }),
        ))
        .unwrap();
        assert_eq!(e.cells, (0..700).collect::<Vec<_>>());
        assert_eq!(e.attributions.len(), 700 * g);
        for (i, row) in e.attributions.chunks(g).enumerate() {
            assert!(row.iter().any(|&v| v != 0.0), "cell {i} got no attribution");
        }
        assert_eq!(events.last(), Some(&(events.len(), events.len(), 700, 700)));
        // Two samples per chunk, so the three draws of a batch run as chunks of 2 and 1.
        let small = block_on(explain_chunked(&model, &x, &targets, &refs, 0, &o, &d, &mut Silent, 512 * g * 2, &|r| r)).unwrap();
        assert_eq!(small.cells, e.cells);
        for (a, b) in small.attributions.iter().zip(&e.attributions) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Saliency is the per-gene mean, ranked most positive first.
        for j in 0..g {
            let mean = e.attributions.chunks(g).map(|r| r[j] as f64).sum::<f64>() / 700.0;
            assert!((e.saliency[j] as f64 - mean).abs() < 1e-5);
        }
        assert!(e.ranking.windows(2).all(|w| e.saliency[w[0]] >= e.saliency[w[1]]));
        // Cancelling stops the run.
        let cancelled = block_on(expected_gradients(&model, &x, &targets, &refs, 0, &o, &d, &mut FnObserver(|_: &Progress| Err(SclabelError::Cancelled))));
        assert!(matches!(cancelled, Err(SclabelError::Cancelled)));
    }

    #[test]
    fn same_seed_same_result() {
        let d = device();
        let g = 10;
        let model = tiny_model(g, &["a", "b", "c"], &d);
        let x = random_matrix(40, g, 6);
        let targets: Vec<usize> = (0..30).collect();
        let refs: Vec<usize> = (30..40).collect();
        let o = ExplainOptions { n_samples: 7, batch_size: 8, n_cells: Some(12), seed: 3, ..Default::default() };
        let a = run(&model, &x, &targets, &refs, 1, &o, &d).unwrap();
        let b = run(&model, &x, &targets, &refs, 1, &o, &d).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cells.len(), 12);
        assert!(a.cells.windows(2).all(|w| w[0] < w[1]) && a.cells.iter().all(|c| targets.contains(c)));
        let other = run(&model, &x, &targets, &refs, 1, &ExplainOptions { seed: 4, ..o.clone() }, &d).unwrap();
        assert_ne!(a.attributions, other.attributions);
        // n_cells at or above the number of target cells takes them all, once each.
        let all = run(&model, &x, &targets, &refs, 1, &ExplainOptions { n_cells: Some(100), ..o }, &d).unwrap();
        assert_eq!(all.cells, targets);
    }

    #[test]
    fn bad_requests_are_errors() {
        let d = device();
        let model = tiny_model(6, &["a", "b"], &d);
        let x = random_matrix(4, 6, 1);
        let o = ExplainOptions::default();
        let msg = |r: Result<Explanation>| r.unwrap_err().to_string();
        assert!(msg(run(&model, &x, &[0], &[1], 2, &o, &d)).contains("out of range"));
        assert!(msg(run(&model, &x, &[0], &[], 0, &o, &d)).contains("reference pool is empty"));
        assert!(msg(run(&model, &x, &[], &[1], 0, &o, &d)).contains("no target cells"));
        assert!(msg(run(&model, &x, &[0], &[9], 0, &o, &d)).contains("row 9"));
        assert!(msg(run(&model, &x, &[0], &[1], 0, &ExplainOptions { n_samples: 0, ..Default::default() }, &d)).contains("n_samples"));
        assert!(msg(run(&model, &random_matrix(4, 5, 1), &[0], &[1], 0, &o, &d)).contains("5 genes in the data, 6 in the model"));
        let parsed: std::result::Result<ExplainOptions, _> = serde_json::from_str(r#"{"target": "a", "n_batches": 3}"#);
        assert!(parsed.is_err(), "unknown option fields are refused");
    }

    fn synthetic() -> (AnnData, ScnymModel, ComputeDevice) {
        let cd = cpu(BackendRequest::Cpu, "test").unwrap();
        let ad = synthetic_counts(&SyntheticSpec { n_cells: 60, n_genes: 20, n_classes: 3, markers_per_class: 3, marker_mean: 6.0, seed: 2 });
        let model = tiny_model(20, &["type_0", "type_1", "type_2"], &cd.device);
        (ad, model, cd)
    }

    #[test]
    fn anndata_wrapper_picks_target_and_reference_cells() {
        let (ad, model, cd) = synthetic();
        let opts = |source: Option<&str>| ExplainOptions {
            target: "type_1".into(),
            source: source.map(String::from),
            n_samples: 5,
            normalize: true,
            ..Default::default()
        };
        let e = block_on(explain_adata(&ad, &model, "cell_type", &opts(None), &cd, &mut Silent)).unwrap();
        assert_eq!(e.target, "type_1");
        assert_eq!(e.cells, (0..60).filter(|i| i % 3 == 1).collect::<Vec<_>>());
        assert_eq!(e.genes, model.genes);
        assert!(e.warnings.is_empty());
        let vs_all = block_on(explain_adata(&ad, &model, "cell_type", &opts(Some("all")), &cd, &mut Silent)).unwrap();
        assert_eq!(vs_all, e);
        let vs_0 = block_on(explain_adata(&ad, &model, "cell_type", &opts(Some("type_0")), &cd, &mut Silent)).unwrap();
        assert_eq!(vs_0.cells, e.cells);
        assert_ne!(vs_0.attributions, e.attributions);
        // Counts are refused without normalize, as in prediction.
        let raw = block_on(explain_adata(&ad, &model, "cell_type", &ExplainOptions { normalize: false, ..opts(None) }, &cd, &mut Silent));
        assert!(raw.unwrap_err().to_string().contains("raw counts"));
    }

    #[test]
    fn unknown_or_absent_classes_are_named() {
        let (ad, model, cd) = synthetic();
        let go = |target: &str, source: Option<&str>, label_key: &str| {
            let o = ExplainOptions { target: target.into(), source: source.map(String::from), n_samples: 2, normalize: true, ..Default::default() };
            block_on(explain_adata(&ad, &model, label_key, &o, &cd, &mut Silent)).unwrap_err().to_string()
        };
        let e = go("T cell", None, "cell_type");
        assert!(e.contains("'T cell'") && e.contains("type_0, type_1, type_2"), "{e}");
        let e = go("type_1", Some("B cell"), "cell_type");
        assert!(e.contains("'B cell'") && e.contains("source"), "{e}");
        assert!(go("", None, "cell_type").contains("no class given"));
        assert!(go("type_1", None, "celltype").contains("celltype"));
        // A model class with no cells in the data.
        let (ad2, _, _) = synthetic();
        let only_0_and_1 = ad2.select_obs(&(0..60).filter(|i| i % 3 != 2).collect::<Vec<_>>()).unwrap();
        let o = ExplainOptions { target: "type_2".into(), n_samples: 2, normalize: true, ..Default::default() };
        let e = block_on(explain_adata(&only_0_and_1, &model, "cell_type", &o, &cd, &mut Silent)).unwrap_err().to_string();
        assert!(e.contains("'type_2'") && e.contains("cell_type"), "{e}");
        let o = ExplainOptions { target: "type_0".into(), source: Some("type_2".into()), n_samples: 2, normalize: true, ..Default::default() };
        let e = block_on(explain_adata(&only_0_and_1, &model, "cell_type", &o, &cd, &mut Silent)).unwrap_err().to_string();
        assert!(e.contains("'type_2'") && e.contains("no reference cells"), "{e}");
    }

    /// Speed and completeness on the scNym model imported from the reference run (1767 genes):
    /// `cargo test --features ndarray,cli --lib scnym::explain::tests::imported_model -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; needs ../shared"]
    fn imported_model_timing() {
        use crate::scnym::import::{import_scnym, parse_list};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
        let (dir, data) = (root.join("reference-outputs/scnym-symphony-3pv1"), root.join("data/pbmc_symphony_3chemistries.h5ad"));
        assert!(dir.exists() && data.exists(), "needs ../shared (the reference outputs and data sets beside the project)");
        let cd = cpu(BackendRequest::Cpu, "test").unwrap();
        let list = |f: &str| parse_list(&std::fs::read_to_string(dir.join(f)).unwrap());
        let weights = std::fs::read(dir.join("00_best_model_weights.pkl")).unwrap();
        let model = import_scnym(&weights, "00_best_model_weights.pkl", list("gene_names.txt"), list("class_names.txt"), &cd.device).unwrap();
        let ad = crate::io::h5ad::read_h5ad(&std::fs::read(&data).unwrap(), "symphony").unwrap();
        // The largest class, so there are 1000 cells to explain.
        let labels = ad.obs.get("cell_type").unwrap().to_strings();
        let count = |k: &String| labels.iter().filter(|l| l.as_ref() == Some(k)).count();
        let target = model.classes.iter().max_by_key(|k| count(k)).unwrap().as_str();
        let o = ExplainOptions { target: target.into(), n_cells: Some(1000), normalize: true, ..Default::default() };
        let start = std::time::Instant::now();
        let e = block_on(explain_adata(&ad, &model, "cell_type", &o, &cd, &mut Silent)).unwrap();
        let secs = start.elapsed().as_secs_f64();
        eprintln!("{:?}: {} cells × {} genes × {} samples in {secs:.1} s", cd.info.backend, e.cells.len(), e.genes.len(), e.n_samples);
        let top: Vec<&str> = e.ranking.iter().take(15).map(|&j| e.genes[j].as_str()).collect();
        eprintln!("top genes for {target}: {top:?}");
        // Completeness against the whole pool: Σ_g a_ig vs z_c(x_i) − mean z_c(r).
        let (x, _, _) = model_input(&model, &ad, true, false).unwrap();
        let c = model.classes.iter().position(|k| k == target).unwrap();
        let z = logit(&model, &x, c, &cd.device);
        let pool: Vec<usize> = (0..ad.n_obs()).filter(|&i| labels[i].as_deref() != Some(target)).collect();
        let z_ref = pool.iter().map(|&i| z[i] as f64).sum::<f64>() / pool.len() as f64;
        let want: Vec<f64> = e.cells.iter().map(|&i| z[i] as f64 - z_ref).collect();
        let got: Vec<f64> = row_sums(&e).iter().map(|&v| v as f64).collect();
        let mae = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f64>() / got.len() as f64;
        let mean_want = want.iter().sum::<f64>() / want.len() as f64;
        let mean_got = got.iter().sum::<f64>() / got.len() as f64;
        eprintln!("completeness: mean Σa {mean_got:.3} vs mean logit difference {mean_want:.3}; mean |error| per cell {mae:.3}");
        // 1000 cells whatever their label, against every cell (the core function's speed).
        let n = x.n_rows.min(1000);
        let cells: Vec<usize> = (0..n).collect();
        let all: Vec<usize> = (0..x.n_rows).collect();
        let start = std::time::Instant::now();
        let e = run(&model, &x, &cells, &all, c, &ExplainOptions::default(), &cd.device).unwrap();
        eprintln!(
            "{:?}: {} cells × {} genes × {} samples in {:.1} s",
            cd.info.backend,
            e.cells.len(),
            e.genes.len(),
            e.n_samples,
            start.elapsed().as_secs_f64()
        );
    }
}
