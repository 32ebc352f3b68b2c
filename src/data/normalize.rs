//! What scale is X on, and conversion to the log scale a model expects.
//!
//! scNym expects ln(CPM + 1) (each cell scaled to 1e6 counts, natural log1p); Annotatability's
//! notebooks use ln(CP10k + 1). Users' files hold raw counts, log data of other scales, or z-scores,
//! so we detect which and convert — or refuse with a message that says what to do.
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use serde::{Deserialize, Serialize};

/// Largest value a ln(x + 1) matrix can hold for counts scaled to at most 1e6 per cell, with slack.
const MAX_LOG_VALUE: f32 = 16.0;
/// The same for log2(x + 1) (log2(1e6 + 1) = 19.93): Bioconductor's logcounts and many published
/// matrices are base 2, and their values above MAX_LOG_VALUE are not linear data.
const MAX_LOG2_VALUE: f32 = 21.0;
/// Above this no stored value is plausible on any scale (see `detect_from_stats`).
const MAX_PLAUSIBLE_VALUE: f32 = 1e9;
/// The largest outlier of a ln / log2 matrix whose inverse (e^x − 1, 2^x − 1) stays finite in f32.
const MAX_LN_INVERTIBLE: f32 = 80.0;
const MAX_LOG2_INVERTIBLE: f32 = 120.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TargetScale {
    /// ln(CPM + 1): counts per million (scNym).
    Cpm,
    /// ln(CP10k + 1): counts per ten thousand (Annotatability, scanpy's default).
    Cp10k,
}

impl TargetScale {
    pub fn total(self) -> f64 {
        match self {
            TargetScale::Cpm => 1e6,
            TargetScale::Cp10k => 1e4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Normalization {
    /// Every stored value is a non-negative integer.
    RawCounts,
    /// Non-negative, non-integer values too large to be logs: normalised but not log-transformed.
    LinearNormalized,
    /// ln(x + 1) of per-cell normalised counts. `scale` is the per-cell total of expm1(X) when it is
    /// the same for (almost) every cell — e.g. 1e4 or 1e6 — and `None` when totals vary (often a
    /// gene subset such as highly variable genes).
    LogNormalized { scale: Option<f64> },
    /// log2(x + 1) of per-cell normalised counts: values above ln's bound (see `detect`), or per-cell
    /// totals of 2^X − 1 that agree where those of expm1(X) do not. `scale` as for `LogNormalized`.
    Log2Normalized { scale: Option<f64> },
    /// Negative values: centred / scaled data (z-scores), which cannot be turned back into counts.
    Scaled,
}

/// Result of `detect`, with the evidence, so a UI can show why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NormalizationReport {
    pub normalization: Normalization,
    pub min: f32,
    pub max: f32,
    /// Median over cells of Σ expm1(x) (log data) or Σ x (other data).
    pub median_total: f64,
    pub description: String,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// The per-cell total when (almost) every cell has the same one: the data were normalised on this
/// gene set.
fn consistent_total(totals: &[f64]) -> Option<f64> {
    let med = median(totals.to_vec());
    let nonzero = totals.iter().filter(|&&t| t > 0.0).count() as f64;
    let agree = totals.iter().filter(|&&t| t > 0.0 && ((t - med) / med).abs() < 0.01).count() as f64;
    (med > 0.0 && agree >= 0.95 * nonzero).then_some(med)
}

/// What detection needs from every stored value of a matrix, gathered a row at a time, so a
/// reader that keeps only some genes can still tell the scale (and each cell's totals over all
/// genes) as if it held the whole matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueStats {
    pub min: f32,
    pub max: f32,
    pub all_integer: bool,
    /// Per cell: Σ x, Σ (e^x − 1), Σ (2^x − 1) over all of its stored values.
    pub sums: Vec<f64>,
    pub ln_totals: Vec<f64>,
    pub log2_totals: Vec<f64>,
    /// The first non-finite value: (cell, gene column, value).
    pub non_finite: Option<(usize, u32, f32)>,
    /// Finite stored values seen, those above what a ln matrix holds (`MAX_LOG_VALUE`), the
    /// largest of the others, and the first of those above (cell, gene column, value): what tells
    /// a log matrix with a few outliers from linear data.
    pub n_values: u64,
    pub above_log: u64,
    pub max_within_log: f32,
    pub first_above_log: Option<(usize, u32, f32)>,
    /// Where the largest value is (cell, gene column; the first cell holding it).
    pub max_at: Option<(usize, u32)>,
    /// How many gene columns the gene positions above count in, when that is the matrix whose
    /// names a caller passes (`of`); `None` when the values came from a reader that also saw genes
    /// the data set does not keep, or that does not say which gene a value is (streamed CSR).
    pub n_cols: Option<usize>,
}

impl Default for ValueStats {
    fn default() -> Self {
        Self {
            min: 0.0,
            max: 0.0,
            all_integer: true,
            sums: Vec::new(),
            ln_totals: Vec::new(),
            log2_totals: Vec::new(),
            non_finite: None,
            n_values: 0,
            above_log: 0,
            max_within_log: 0.0,
            first_above_log: None,
            max_at: None,
            n_cols: None,
        }
    }
}

impl ValueStats {
    /// Adds the next cell's stored values (`indices` only name a non-finite value's gene).
    pub fn add_row(&mut self, indices: &[u32], values: &[f32]) {
        let cell = self.sums.len();
        self.sums.push(0.0);
        self.ln_totals.push(0.0);
        self.log2_totals.push(0.0);
        for (k, &v) in values.iter().enumerate() {
            self.add_value(cell, indices.get(k).copied().unwrap_or(u32::MAX), v);
        }
    }

    /// Makes room for `n` cells whose values arrive in any order (a CSC matrix), through
    /// [`ValueStats::add_value`].
    pub fn start_rows(&mut self, n: usize) {
        self.sums = vec![0.0; n];
        self.ln_totals = vec![0.0; n];
        self.log2_totals = vec![0.0; n];
    }

    /// Adds one stored value of `cell` (already made room for) at gene column `gene`.
    pub fn add_value(&mut self, cell: usize, gene: u32, v: f32) {
        if !v.is_finite() {
            if self.non_finite.is_none_or(|(c, _, _)| cell < c) {
                self.non_finite = Some((cell, gene, v));
            }
            return;
        }
        self.min = self.min.min(v);
        if v > self.max || (v == self.max && self.max_at.is_none_or(|(c, _)| cell < c)) {
            self.max_at = Some((cell, gene));
        }
        self.max = self.max.max(v);
        self.all_integer &= v.fract() == 0.0;
        self.n_values += 1;
        if v > MAX_LOG_VALUE {
            self.above_log += 1;
            if self.first_above_log.is_none_or(|(c, _, _)| cell < c) {
                self.first_above_log = Some((cell, gene, v));
            }
        } else {
            self.max_within_log = self.max_within_log.max(v);
        }
        let x = v as f64;
        // Each linear value rounded to f32 before it is summed, as `rescale_in_place` rounds the
        // values it divides: the totals are then exactly those of normalising the whole matrix.
        self.sums[cell] += x;
        self.ln_totals[cell] += x.exp_m1() as f32 as f64;
        self.log2_totals[cell] += (x * std::f64::consts::LN_2).exp_m1() as f32 as f64;
    }

    /// The statistics of the cells at `rows` (global ones unchanged: they describe the data's
    /// scale); a value's position is kept, renumbered, when its cell is among `rows`.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let pick = |v: &[f64]| rows.iter().map(|&r| v[r]).collect();
        let at = |cell: usize| rows.iter().position(|&r| r == cell);
        Self {
            sums: pick(&self.sums),
            ln_totals: pick(&self.ln_totals),
            log2_totals: pick(&self.log2_totals),
            non_finite: self.non_finite.and_then(|(c, g, v)| Some((at(c)?, g, v))),
            first_above_log: self.first_above_log.and_then(|(c, g, v)| Some((at(c)?, g, v))),
            max_at: self.max_at.and_then(|(c, g)| Some((at(c)?, g))),
            ..*self
        }
    }

    /// The name of gene column `gene` among `var_names`, when the positions count in them.
    fn gene_name<'a>(&self, var_names: &'a [String], gene: u32) -> Option<&'a str> {
        (self.n_cols == Some(var_names.len())).then(|| var_names.get(gene as usize).map(String::as_str)).flatten()
    }

    /// Where a value is: its cell and, when the positions count in `var_names`, its gene.
    fn locate<'a>(&self, var_names: &'a [String], at: Option<(usize, u32)>) -> Option<(usize, Option<&'a str>)> {
        at.map(|(cell, gene)| (cell, self.gene_name(var_names, gene)))
    }

    pub fn of(x: &CsrMatrix) -> Self {
        let mut s = Self { n_cols: Some(x.n_cols), ..Self::default() };
        for i in 0..x.n_rows {
            let (idx, val) = x.row(i);
            s.add_row(idx, val);
        }
        s
    }

    /// Each cell's linear total over all genes under the detected scale (what `rescale_to_log`
    /// divides by), or `None` for scaled data.
    pub fn totals(&self, normalization: &Normalization) -> Option<&[f64]> {
        match normalization {
            Normalization::RawCounts | Normalization::LinearNormalized => Some(&self.sums),
            Normalization::LogNormalized { .. } => Some(&self.ln_totals),
            Normalization::Log2Normalized { .. } => Some(&self.log2_totals),
            Normalization::Scaled => None,
        }
    }
}

/// Detects what scale X is on. NaN / infinite values are an error.
pub fn detect(x: &CsrMatrix, var_names: &[String]) -> Result<NormalizationReport> {
    detect_from_stats(&ValueStats::of(x), var_names)
}

/// "at cell 3, gene 'CD3E'", as far as the place is known.
fn described(at: Option<(usize, Option<&str>)>) -> String {
    match at {
        Some((cell, Some(gene))) => format!("at cell {cell}, gene '{gene}'"),
        Some((cell, None)) => format!("at cell {cell}"),
        None => "in a cell outside the ones selected".into(),
    }
}

/// An `invalid_values` error with its place as data.
fn placed(reason: String, at: Option<(usize, Option<&str>)>) -> SclabelError {
    match at {
        Some((cell, Some(gene))) => SclabelError::values(reason).at_row(cell).at_gene(gene),
        Some((cell, None)) => SclabelError::values(reason).at_row(cell),
        None => SclabelError::values(reason),
    }
}

/// [`detect`] from statistics gathered over every stored value (see [`ValueStats`]).
pub fn detect_from_stats(stats: &ValueStats, var_names: &[String]) -> Result<NormalizationReport> {
    if let Some((cell, gene, v)) = stats.non_finite {
        let at = stats.locate(var_names, Some((cell, gene)));
        return Err(placed(format!("X has a non-finite value ({v}) {}; remove or impute it before analysis", described(at)), at));
    }
    // No expression matrix holds a value this large, on any scale (counts and normalised values
    // per gene stay far below it): a damaged file, or X is not expression.
    let implausible = |why: String| {
        let at = stats.locate(var_names, stats.max_at);
        Err(placed(format!("X has {:e} {}: {why}; the file is damaged or X is not an expression matrix", stats.max, described(at)), at))
    };
    if stats.max > MAX_PLAUSIBLE_VALUE {
        return implausible(format!("no expression matrix holds values above {MAX_PLAUSIBLE_VALUE:e}"));
    }
    let (min, all_integer) = (stats.min, stats.all_integer);
    let sums = &stats.sums;
    // A few values far above the rest of a log matrix (one in 100,000 at most, the rest at most
    // 12, in a matrix of at least 10,000 values) are outliers, not a sign of linear data: the scale is read from the other values, and
    // the description names them. Without this one bad value made a whole ln matrix read as
    // linear. Matrices whose other values come near the log bounds are left to the maximum.
    let outliers = !all_integer
        && min >= 0.0
        && stats.n_values >= 10_000
        && stats.above_log > 0
        && stats.above_log <= (stats.n_values / 100_000).max(1)
        && stats.max_within_log <= 0.75 * MAX_LOG_VALUE;
    let max = if outliers { stats.max_within_log } else { stats.max };
    if min == 0.0 && max == 0.0 && !sums.is_empty() {
        return Err(SclabelError::values(format!(
            "X holds no non-zero value in any of its {} cells: there is nothing to learn from or predict; check that X (or .raw) is the expression matrix",
            sums.len()
        )));
    }
    let (normalization, median_total, description) = if min < 0.0 {
        (Normalization::Scaled, median(sums.clone()), format!(
            "X holds scaled values (min {min:.3} < 0), e.g. z-scores after sc.pp.scale; they cannot be converted back to counts. Use the file's .raw (if it holds counts or log-normalised values) or the unscaled layer"
        ))
    } else if all_integer {
        (Normalization::RawCounts, median(sums.clone()), "X holds raw counts (all values are integers)".to_string())
    } else if max > MAX_LOG2_VALUE {
        (
            Normalization::LinearNormalized,
            median(sums.clone()),
            format!("X holds normalised values that are not log-transformed (max {max:.1} > {MAX_LOG2_VALUE})"),
        )
    } else {
        // Which inverse gives every cell the same total tells the scale when X was normalised on
        // this gene set; a gene subset (HVGs, a panel) has varying totals, and then only the
        // maximum can tell: above ln's bound, a non-integer matrix is log2 unless its plain sums agree.
        let (ln_totals, log2_totals) = (&stats.ln_totals, &stats.log2_totals);
        let (ln_scale, log2_scale) = (consistent_total(ln_totals), consistent_total(log2_totals));
        if max > MAX_LOG_VALUE && consistent_total(sums).is_some() {
            (
                Normalization::LinearNormalized,
                median(sums.clone()),
                format!("X holds normalised values that are not log-transformed (max {max:.1}, the same total in every cell)"),
            )
        } else if max > MAX_LOG_VALUE || (ln_scale.is_none() && log2_scale.is_some()) {
            let med = median(log2_totals.clone());
            let why = if max > MAX_LOG_VALUE {
                format!("max {max:.2} is above ln(1e6+1) = 13.82, the most a natural-log matrix of per-million data holds")
            } else {
                "per-cell totals of 2^x − 1 agree, those of e^x − 1 do not".to_string()
            };
            let description = match log2_scale {
                Some(s) => format!("X holds log2(x+1) of counts normalised to {s:.0} per cell ({why})"),
                None => format!("X holds log2(x+1) of normalised counts ({why}); per-cell totals vary (median {med:.0}), as for a gene subset"),
            };
            (Normalization::Log2Normalized { scale: log2_scale }, med, description)
        } else {
            let med = median(ln_totals.clone());
            let description = match ln_scale {
                Some(s) => format!("X holds ln(x+1) of counts normalised to {s:.0} per cell"),
                None => format!("X holds ln(x+1) of normalised counts; per-cell totals vary (median {med:.0}), as for a gene subset"),
            };
            (Normalization::LogNormalized { scale: ln_scale }, med, description)
        }
    };
    // An outlier of a log matrix is turned back into counts with the rest: past these bounds
    // e^x (2^x) overflows, and its cell would be normalised by an infinite total.
    let overflow = match normalization {
        Normalization::LogNormalized { .. } => Some(MAX_LN_INVERTIBLE),
        Normalization::Log2Normalized { .. } => Some(MAX_LOG2_INVERTIBLE),
        _ => None,
    };
    if let Some(bound) = overflow.filter(|&b| stats.max > b) {
        let base = if bound == MAX_LN_INVERTIBLE { "e" } else { "2" };
        return implausible(format!("read as a log scale ({description}), it would stand for more than {base}^{bound} counts"));
    }
    let description = match stats.first_above_log.filter(|_| outliers) {
        Some((cell, gene, v)) => format!(
            "{description}; {} value{} far above the others (e.g. {v} {}; the others are at most {:.2}) read as outliers: check {}, as {} normalisation is dominated by it",
            stats.above_log,
            if stats.above_log == 1 { "" } else { "s" },
            described(stats.locate(var_names, Some((cell, gene)))),
            stats.max_within_log,
            if stats.above_log == 1 { "it" } else { "them" },
            if stats.above_log == 1 { "its cell's" } else { "their cells'" },
        ),
        _ => description,
    };
    Ok(NormalizationReport { normalization, min, max: stats.max, median_total, description })
}

/// Returns X as ln(count / total · target + 1), where `count` is recovered from whatever scale X is
/// on: raw and linear-normalised values are used directly, ln values go through expm1, log2 values
/// through 2^x − 1. Cells with
/// no counts stay all-zero. Scaled (negative) data is refused with a message that says what to use.
pub fn to_log_normalized(x: &CsrMatrix, var_names: &[String], target: TargetScale) -> Result<(CsrMatrix, NormalizationReport)> {
    to_log_normalized_with(x, var_names, &ValueStats::of(x), target)
}

/// [`to_log_normalized`] with the value statistics of the whole rows `x` was taken from (a data set
/// loaded with only some of its genes keeps them): the scale is detected, and each cell normalised
/// by its total, over all of its genes.
pub fn to_log_normalized_with(x: &CsrMatrix, var_names: &[String], stats: &ValueStats, target: TargetScale) -> Result<(CsrMatrix, NormalizationReport)> {
    if stats.sums.len() != x.n_rows {
        return Err(SclabelError::shape(format!("value statistics of {} cells for {} cells", stats.sums.len(), x.n_rows)));
    }
    let report = detect_from_stats(stats, var_names)?;
    Ok((rescaled_copy(x, log_factor(&report)?, stats.totals(&report.normalization), target)?, report))
}

/// X's values made linear again (`log_factor` turns them into ln(x + 1) before expm1: 1 for ln,
/// ln 2 for log2, `None` for linear data), then ln(x / cell total · target + 1). Cells with no
/// counts stay all-zero.
pub fn rescale_to_log(x: &CsrMatrix, log_factor: Option<f64>, target: TargetScale) -> Result<CsrMatrix> {
    rescaled_copy(x, log_factor, None, target)
}

/// A copy of `x` rescaled by [`rescale_in_place`], after checking that it fits the memory budget.
fn rescaled_copy(x: &CsrMatrix, log_factor: Option<f64>, totals: Option<&[f64]>, target: TargetScale) -> Result<CsrMatrix> {
    crate::memory::reserve(
        &format!("a normalised copy of a {} × {} matrix ({} stored values)", x.n_rows, x.n_cols, x.nnz()),
        x.nnz() as u64 * 8 + (x.n_rows as u64 + 1) * 8,
        "keep fewer genes (e.g. highly variable genes) or cells, or use the native CLI",
    )?;
    let mut out = x.clone();
    rescale_in_place(&mut out, log_factor, totals, target);
    Ok(out)
}

/// The inverse of a detected log scale (see [`rescale_to_log`]); `None` for linear data. Scaled
/// data are refused with the detection's reason.
pub fn log_factor(report: &NormalizationReport) -> Result<Option<f64>> {
    match report.normalization {
        Normalization::Scaled => Err(SclabelError::values(report.description.clone())),
        Normalization::LogNormalized { .. } => Ok(Some(1.0)),
        Normalization::Log2Normalized { .. } => Ok(Some(std::f64::consts::LN_2)),
        Normalization::RawCounts | Normalization::LinearNormalized => Ok(None),
    }
}

/// [`rescale_in_place`] for a block of a file's cells starting at row `start`, with the whole
/// file's per-cell `totals` (the block's rows are `start..start + x.n_rows`).
pub fn rescale_block_in_place(x: &mut CsrMatrix, log_factor: Option<f64>, totals: Option<&[f64]>, start: usize, target: TargetScale) {
    let n = x.n_rows;
    rescale_in_place(x, log_factor, totals.map(|t| &t[start..start + n]), target);
}

/// [`rescale_to_log`] in place. `totals` are the cells' linear totals over *all* of their genes
/// when `x` keeps only some of them (see [`ValueStats::totals`]): the result then equals
/// normalising the whole matrix and keeping those genes. `None`: each row's own sum.
pub fn rescale_in_place(x: &mut CsrMatrix, log_factor: Option<f64>, totals: Option<&[f64]>, target: TargetScale) {
    let target = target.total();
    for i in 0..x.n_rows {
        let (a, b) = (x.indptr[i] as usize, x.indptr[i + 1] as usize);
        let row = &mut x.data[a..b];
        if let Some(f) = log_factor {
            row.iter_mut().for_each(|v| *v = (*v as f64 * f).exp_m1() as f32);
        }
        let total: f64 = match totals {
            Some(t) => t[i],
            None => row.iter().map(|&v| v as f64).sum(),
        };
        if total > 0.0 {
            let f = target / total;
            row.iter_mut().for_each(|v| *v = ((*v as f64) * f).ln_1p() as f32);
        }
    }
}

/// Checks that X is already on a ln(x+1) scale a model can use (what scNym's API checks), with an
/// error that says how to fix it otherwise.
pub fn require_log_normalized(x: &CsrMatrix, var_names: &[String]) -> Result<NormalizationReport> {
    let report = detect(x, var_names)?;
    match report.normalization {
        Normalization::LogNormalized { .. } => Ok(report),
        Normalization::RawCounts => {
            Err(SclabelError::values("X holds raw counts; the model expects ln(CPM+1). Normalise first (normalize: \"cpm\") or pass log-normalised data"))
        }
        Normalization::LinearNormalized | Normalization::Log2Normalized { .. } => {
            Err(SclabelError::values(format!("{}; the model expects ln(CPM+1). Normalise first (normalize: \"cpm\")", report.description)))
        }
        Normalization::Scaled => Err(SclabelError::values(report.description)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("g{i}")).collect()
    }

    fn counts() -> CsrMatrix {
        CsrMatrix::from_dense(3, 4, &[1., 0., 3., 0., 0., 2., 2., 4., 5., 5., 0., 0.]).unwrap()
    }

    /// 600 cells × 50 genes of seeded counts (0–19, about half zero: ~14,000 stored values).
    fn many_counts() -> CsrMatrix {
        let mut state = 12345u64;
        let v: Vec<f32> = (0..600 * 50)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let r = (state >> 33) % 40;
                if r < 20 {
                    0.0
                } else {
                    (r - 20) as f32
                }
            })
            .collect();
        CsrMatrix::from_dense(600, 50, &v).unwrap()
    }

    #[test]
    fn one_outlier_does_not_make_a_log_matrix_linear() {
        let (ln, _) = to_log_normalized(&many_counts(), &genes(50), TargetScale::Cp10k).unwrap();
        let clean = detect(&ln, &genes(50)).unwrap();
        assert!(matches!(clean.normalization, Normalization::LogNormalized { scale: Some(s) } if (s - 1e4).abs() < 1e-3), "{}", clean.description);
        assert!(!clean.description.contains("outlier"));
        // One impossible value (25 among values ≤ ~8): still ln, and the value is named.
        let mut bad = ln.clone();
        bad.data[777] = 25.0;
        let r = detect(&bad, &genes(50)).unwrap();
        assert!(matches!(r.normalization, Normalization::LogNormalized { .. }), "{:?}: {}", r.normalization, r.description);
        assert!(r.description.contains("1 value far above the others (e.g. 25 at cell") && r.description.contains("outlier"), "{}", r.description);
        assert_eq!(r.max, 25.0, "the report keeps the true maximum");
        // Two such values in ~14,000 are not "a few in 100,000": the maximum decides, as before.
        bad.data[1234] = 30.0;
        assert_eq!(detect(&bad, &genes(50)).unwrap().normalization, Normalization::LinearNormalized);
        // Past what e^x can stand for, an outlier is refused, naming its cell and gene.
        let mut huge = ln.clone();
        huge.data[777] = 100.0;
        let e = detect(&huge, &genes(50)).unwrap_err();
        assert!(matches!(&e, SclabelError::InvalidValues { .. }) && e.to_string().contains("X has 1e2 at cell"), "{e}");
        assert!(e.details()["gene"].is_string() && e.details()["row"].is_number(), "{}", e.details());
        // 1e30 anywhere, on any scale, is no expression value.
        let mut counts = many_counts();
        counts.data[5] = 1e30;
        let e = detect(&counts, &genes(50)).unwrap_err();
        assert!(e.to_string().contains("no expression matrix holds values above"), "{e}");
        // Linear data (counts per 10k, not logged) stays linear.
        let mut linear = many_counts();
        for r in 0..linear.n_rows {
            let (a, b) = (linear.indptr[r] as usize, linear.indptr[r + 1] as usize);
            let total: f32 = linear.data[a..b].iter().sum();
            linear.data[a..b].iter_mut().for_each(|v| *v *= 1e4 / total);
        }
        assert_eq!(detect(&linear, &genes(50)).unwrap().normalization, Normalization::LinearNormalized);
    }

    #[test]
    fn an_all_zero_matrix_is_refused_by_name() {
        let zero = CsrMatrix::from_dense(3, 4, &[0.0; 12]).unwrap();
        let e = detect_from_stats(&ValueStats::of(&zero), &genes(4)).unwrap_err();
        assert_eq!(e.code(), "invalid_values");
        assert!(e.to_string().contains("no non-zero value in any of its 3 cells"), "{e}");
    }

    #[test]
    fn detects_raw_counts_and_converts_to_cpm() {
        let x = counts();
        assert_eq!(detect(&x, &genes(4)).unwrap().normalization, Normalization::RawCounts);
        let (y, _) = to_log_normalized(&x, &genes(4), TargetScale::Cpm).unwrap();
        for i in 0..3 {
            let total: f64 = y.row(i).1.iter().map(|&v| (v as f64).exp_m1()).sum();
            assert!((total - 1e6).abs() < 1.0, "row {i} total {total}");
        }
        // Cell 0: 1 of 4 counts → ln(250001).
        assert!((y.row(0).1[0] - (250_001f64).ln() as f32).abs() < 1e-4);
    }

    #[test]
    fn detects_log_scale_and_rescales() {
        let x = counts();
        let (cp10k, _) = to_log_normalized(&x, &genes(4), TargetScale::Cp10k).unwrap();
        let report = detect(&cp10k, &genes(4)).unwrap();
        match report.normalization {
            Normalization::LogNormalized { scale: Some(s) } => assert!((s - 1e4).abs() < 1.0, "{s}"),
            other => panic!("{other:?}"),
        }
        // Log data of one scale converts to another exactly as from counts.
        let (a, _) = to_log_normalized(&cp10k, &genes(4), TargetScale::Cpm).unwrap();
        let (b, _) = to_log_normalized(&x, &genes(4), TargetScale::Cpm).unwrap();
        for (u, v) in a.data.iter().zip(&b.data) {
            assert!((u - v).abs() < 1e-4);
        }
    }

    #[test]
    fn refuses_scaled_data_and_nan_with_names() {
        let x = CsrMatrix::from_dense(1, 2, &[-0.5, 1.2]).unwrap();
        let e = to_log_normalized(&x, &genes(2), TargetScale::Cpm).unwrap_err();
        assert!(e.to_string().contains(".raw"), "{e}");
        let x = CsrMatrix::from_dense(1, 2, &[f32::NAN, 1.0]).unwrap();
        let e = detect(&x, &genes(2)).unwrap_err();
        assert!(e.to_string().contains("gene 'g0'"), "{e}");
        let e = require_log_normalized(&counts(), &genes(4)).unwrap_err();
        assert!(e.to_string().contains("raw counts"), "{e}");
    }

    #[test]
    fn linear_normalized_is_recognised() {
        let x = CsrMatrix::from_dense(1, 2, &[100.5, 899.5]).unwrap();
        assert_eq!(detect(&x, &genes(2)).unwrap().normalization, Normalization::LinearNormalized);
    }

    /// log2(x + 1) of `counts()` normalised to `total` per cell.
    fn log2_of(total: f64) -> CsrMatrix {
        let mut x = counts();
        for i in 0..x.n_rows {
            let (a, b) = (x.indptr[i] as usize, x.indptr[i + 1] as usize);
            let sum: f64 = x.data[a..b].iter().map(|&v| v as f64).sum();
            x.data[a..b].iter_mut().for_each(|v| *v = (*v as f64 / sum * total + 1.0).log2() as f32);
        }
        x
    }

    #[test]
    fn log2_is_told_from_ln_by_totals_and_converted_with_its_own_inverse() {
        // Per-cell totals of 2^x − 1 agree (1e4), those of e^x − 1 do not: base 2, though every
        // value is below ln's bound.
        let x = log2_of(1e4);
        match detect(&x, &genes(4)).unwrap().normalization {
            Normalization::Log2Normalized { scale: Some(s) } => assert!((s - 1e4).abs() < 1.0, "{s}"),
            other => panic!("{other:?}"),
        }
        let (a, _) = to_log_normalized(&x, &genes(4), TargetScale::Cpm).unwrap();
        let (b, _) = to_log_normalized(&counts(), &genes(4), TargetScale::Cpm).unwrap();
        for (u, v) in a.data.iter().zip(&b.data) {
            assert!((u - v).abs() < 1e-4, "{u} vs {v}");
        }
        // A model input refuses it with the reason.
        let e = require_log_normalized(&x, &genes(4)).unwrap_err();
        assert!(e.to_string().contains("log2(x+1)"), "{e}");
    }

    #[test]
    fn values_above_ln_bound_are_log2_unless_their_sums_agree() {
        // A gene subset of log2 per-million data: totals vary, one value 18.5 > ln(1e6 + 1).
        let x = CsrMatrix::from_dense(2, 3, &[18.5, 3.25, 0.0, 7.5, 0.0, 12.75]).unwrap();
        let report = detect(&x, &genes(3)).unwrap();
        assert_eq!(report.normalization, Normalization::Log2Normalized { scale: None }, "{}", report.description);
        assert!(report.description.contains("13.82"), "{}", report.description);
        let (y, _) = to_log_normalized(&x, &genes(3), TargetScale::Cpm).unwrap();
        // cell 0: 2^18.5 − 1 and 2^3.25 − 1 rescaled to 1e6
        let (c0, c1) = (18.5f64.exp2() - 1.0, 3.25f64.exp2() - 1.0);
        assert!((y.row(0).1[1] as f64 - (c1 / (c0 + c1) * 1e6).ln_1p()).abs() < 1e-4);
        // Linear data in the same range whose cells sum to the same total stay linear.
        let x = CsrMatrix::from_dense(2, 3, &[18.5, 1.5, 0.0, 7.5, 0.0, 12.5]).unwrap();
        assert_eq!(detect(&x, &genes(3)).unwrap().normalization, Normalization::LinearNormalized);
        // Above log2's bound: linear.
        let x = CsrMatrix::from_dense(1, 2, &[22.5, 1.5]).unwrap();
        assert_eq!(detect(&x, &genes(2)).unwrap().normalization, Normalization::LinearNormalized);
    }
}
