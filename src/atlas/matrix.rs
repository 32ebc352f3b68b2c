//! The preconverted reference matrix: a labelled reference in the compact form a browser loads fast
//! (issue 7's "atlas matrix"). One file: zlib (deflate) around a safetensors container, so Python
//! reads it with `zlib.decompress` + `safetensors.numpy.load`, and the browser with one inflate.
//!
//! Inside the container:
//! - `indptr` (U32, or U64 past 4 G stored values): row starts, as CSR.
//! - `gaps` (U8): per row, each stored gene's column minus the previous one's (the first: its
//!   column), LEB128 varints — one byte for gaps under 128, i.e. most of them at a few thousand genes.
//! - `values` (U8 quantised or F16 / F32): ln(CPM+1) values. `q8` is linear on (0, max]: q = max(1,
//!   round(v / max · 255)), so a stored value never becomes 0 and the error is ≤ max / 510 (≈ 0.027
//!   ln units at max ≈ 13.8 = ln(10⁶ + 1)).
//! - `labels`, `domains` (I32 codes; −1 = unlabelled) into the metadata's `classes` / `domains`.
//!
//! Metadata (JSON strings): `format` = "sclabel-atlas-matrix", `format_version`, `genes`, `classes`,
//! `domains`, `class_counts`, `label_key`, `domain_key`, `cell_names`, `quantization`
//! (`{"kind":"q8","max":…}` / f16 / f32), `input` = "ln(CPM+1)", `subsample` (cells kept per class).
use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::anndata::{AnnData, Column, ObsTable};
use crate::data::matrix::CsrMatrix;
use crate::{Result, SclabelError};

pub const FORMAT: &str = "sclabel-atlas-matrix";
pub const FORMAT_VERSION: u32 = 1;

/// How stored values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum ValueEncoding {
    /// One byte per value, linear on (0, max].
    Q8,
    F16,
    F32,
}

/// A labelled reference as the atlas matrix holds it: ln(CPM+1) CSR over `genes`, one label (and
/// optionally one domain) per cell.
#[derive(Debug, Clone, PartialEq)]
pub struct AtlasMatrix {
    pub x: CsrMatrix,
    pub genes: Vec<String>,
    pub cell_names: Vec<String>,
    pub label_key: String,
    pub classes: Vec<String>,
    /// Per cell, an index into `classes`, or −1 (unlabelled).
    pub labels: Vec<i32>,
    pub domain_key: Option<String>,
    pub domains: Vec<String>,
    /// Per cell, an index into `domains` (empty when there is no domain column).
    pub domain_codes: Vec<i32>,
    /// Cells kept per class when the reference was subsampled (`None`: all cells).
    pub subsample: Option<usize>,
}

fn bad(reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: "atlas matrix".into(), reason: reason.into() }
}

fn codes_of(adata: &AnnData, key: &str, what: &str) -> Result<(Vec<i32>, Vec<String>)> {
    let column = adata.obs.get(key)?;
    let strings = column.to_strings();
    let mut categories: Vec<String> = strings.iter().flatten().filter(|s| s.as_str() != "Unlabeled").cloned().collect();
    categories.sort();
    categories.dedup();
    let index: HashMap<&str, i32> = categories.iter().enumerate().map(|(i, c)| (c.as_str(), i as i32)).collect();
    let codes = strings.iter().map(|s| s.as_deref().and_then(|s| index.get(s).copied()).unwrap_or(-1)).collect();
    if categories.is_empty() {
        return Err(SclabelError::labels(format!("{what} column '{key}' has no labelled cell")).in_column(key));
    }
    Ok((codes, categories))
}

impl AtlasMatrix {
    /// From a reference already on the ln(CPM+1) scale (`x` over `genes`, see `scnym::api::prepare_input`).
    /// `max_per_class` keeps a seeded random subset of each class's cells (unlabelled cells too, as one group).
    pub fn from_reference(
        adata: &AnnData,
        x: &CsrMatrix,
        genes: &[String],
        label_key: &str,
        domain_key: Option<&str>,
        max_per_class: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        if max_per_class == Some(0) {
            return Err(SclabelError::InvalidOption {
                option: "max_cells_per_class".into(),
                reason: "0 would keep no cell; give at least 1, or leave it out to keep every cell".into(),
            });
        }
        let (labels, classes) = codes_of(adata, label_key, "label")?;
        let (domain_codes, domains) = match domain_key {
            Some(k) => codes_of(adata, k, "domain")?,
            None => (Vec::new(), Vec::new()),
        };
        let mut rows: Vec<usize> = (0..adata.n_obs()).collect();
        if let Some(m) = max_per_class {
            let mut rng = StdRng::seed_from_u64(seed);
            // In class order (a BTreeMap): a HashMap's order changes from run to run, and the
            // seeded subsample with it.
            let mut by_class: std::collections::BTreeMap<i32, Vec<usize>> = std::collections::BTreeMap::new();
            for (i, &c) in labels.iter().enumerate() {
                by_class.entry(c).or_default().push(i);
            }
            rows.clear();
            for (_, mut cells) in by_class {
                cells.shuffle(&mut rng);
                cells.truncate(m);
                rows.extend(cells);
            }
            rows.sort_unstable();
        }
        Ok(Self {
            x: x.select_rows(&rows).with_sorted_rows(),
            genes: genes.to_vec(),
            cell_names: rows.iter().map(|&r| adata.obs_names[r].clone()).collect(),
            label_key: label_key.to_string(),
            classes,
            labels: rows.iter().map(|&r| labels[r]).collect(),
            domain_key: domain_key.map(str::to_string),
            domains,
            domain_codes: if domain_codes.is_empty() { Vec::new() } else { rows.iter().map(|&r| domain_codes[r]).collect() },
            subsample: max_per_class,
        })
    }

    /// Only the columns of `genes` the atlas has, in the atlas's order (e.g. those a query shares
    /// with it). The values need nothing from the dropped columns: they are ln(CPM+1) over the
    /// source's genes already. No gene in common is an error naming both sides.
    pub fn keep_genes(self, genes: &[String]) -> Result<Self> {
        let wanted: std::collections::HashSet<&str> = genes.iter().map(String::as_str).collect();
        let kept: Vec<usize> = (0..self.genes.len()).filter(|&j| wanted.contains(self.genes[j].as_str())).collect();
        if kept.is_empty() {
            return Err(SclabelError::genes(format!(
                "none of the {} genes asked for (e.g. '{}') is among the atlas matrix's {} (e.g. '{}')",
                genes.len(),
                genes.first().map(String::as_str).unwrap_or(""),
                self.genes.len(),
                self.genes.first().map(String::as_str).unwrap_or("")
            )));
        }
        if kept.len() == self.genes.len() {
            return Ok(self);
        }
        let x = self.x.select_cols(&kept);
        let genes = kept.iter().map(|&j| self.genes[j].clone()).collect();
        Ok(Self { x, genes, ..self })
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.labels.iter().filter(|&&c| c >= 0).for_each(|&c| counts[c as usize] += 1);
        counts
    }

    /// The matrix as an AnnData: X = the stored ln(CPM+1) values, obs = the label (and domain)
    /// column under their original names ('Unlabeled' for unlabelled cells).
    pub fn to_anndata(&self) -> AnnData {
        let mut columns = Vec::new();
        let mut categories = self.classes.clone();
        let unlabeled = categories.len() as i32;
        categories.push("Unlabeled".into());
        let codes = self.labels.iter().map(|&c| if c < 0 { unlabeled } else { c }).collect();
        columns.push((self.label_key.clone(), Column::Categorical { codes, categories }));
        if let Some(k) = &self.domain_key {
            columns.push((k.clone(), Column::Categorical { codes: self.domain_codes.clone(), categories: self.domains.clone() }));
        }
        AnnData {
            x: self.x.clone(),
            obs: ObsTable { columns },
            obs_names: self.cell_names.clone(),
            var_names: self.genes.clone(),
            var_ids: Vec::new(),
            x_stats: None,
            raw: None,
        }
    }

    /// The compressed file's bytes.
    pub fn to_bytes(&self, encoding: ValueEncoding) -> Result<Vec<u8>> {
        let x = &self.x;
        let wide = x.data.len() > u32::MAX as usize;
        let indptr: Vec<u8> =
            if wide { x.indptr.iter().flat_map(|&p| p.to_le_bytes()).collect() } else { x.indptr.iter().flat_map(|&p| (p as u32).to_le_bytes()).collect() };
        let mut gaps = Vec::with_capacity(x.data.len() + x.data.len() / 8);
        for r in 0..x.n_rows {
            let (a, b) = (x.indptr[r] as usize, x.indptr[r + 1] as usize);
            let mut previous = 0u32;
            for (k, &c) in x.indices[a..b].iter().enumerate() {
                if k > 0 && c <= previous {
                    return Err(SclabelError::values(format!("atlas matrix: row {r} has unsorted or repeated gene columns")));
                }
                let mut gap = c - if k == 0 { 0 } else { previous };
                previous = c;
                loop {
                    let byte = (gap & 0x7f) as u8;
                    gap >>= 7;
                    if gap == 0 {
                        gaps.push(byte);
                        break;
                    }
                    gaps.push(byte | 0x80);
                }
            }
        }
        let max = x.data.iter().fold(0f32, |m, &v| m.max(v));
        if x.data.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(SclabelError::values("atlas matrix: values must be finite and ≥ 0 (ln(CPM+1))"));
        }
        let (values, dtype, quantization) = match encoding {
            ValueEncoding::Q8 => {
                let scale = if max > 0.0 { 255.0 / max } else { 0.0 };
                let q = x.data.iter().map(|&v| if v > 0.0 { (v * scale).round().clamp(1.0, 255.0) as u8 } else { 0 }).collect::<Vec<u8>>();
                (q, Dtype::U8, serde_json::json!({ "kind": "q8", "max": max }))
            }
            ValueEncoding::F16 => {
                (x.data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(), Dtype::F16, serde_json::json!({ "kind": "f16" }))
            }
            ValueEncoding::F32 => (x.data.iter().flat_map(|&v| v.to_le_bytes()).collect(), Dtype::F32, serde_json::json!({ "kind": "f32" })),
        };
        let labels: Vec<u8> = self.labels.iter().flat_map(|c| c.to_le_bytes()).collect();
        let domains: Vec<u8> = self.domain_codes.iter().flat_map(|c| c.to_le_bytes()).collect();
        let n = x.n_rows;
        fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>> {
            TensorView::new(dtype, shape, data).map_err(|e| bad(format!("{e}")))
        }
        let mut tensors = vec![
            ("indptr".to_string(), view(if wide { Dtype::U64 } else { Dtype::U32 }, vec![n + 1], &indptr)?),
            ("gaps".to_string(), view(Dtype::U8, vec![gaps.len()], &gaps)?),
            ("values".to_string(), view(dtype, vec![x.data.len()], &values)?),
            ("labels".to_string(), view(Dtype::I32, vec![n], &labels)?),
        ];
        if self.domain_key.is_some() {
            tensors.push(("domains".to_string(), view(Dtype::I32, vec![n], &domains)?));
        }
        let json = |v: serde_json::Value| v.to_string();
        let meta: HashMap<String, String> = [
            ("format", FORMAT.to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("n_genes", x.n_cols.to_string()),
            ("genes", json(serde_json::json!(self.genes))),
            ("cell_names", json(serde_json::json!(self.cell_names))),
            ("label_key", self.label_key.clone()),
            ("classes", json(serde_json::json!(self.classes))),
            ("class_counts", json(serde_json::json!(self.class_counts()))),
            ("domain_key", json(serde_json::json!(self.domain_key))),
            ("domains", json(serde_json::json!(self.domains))),
            ("quantization", json(quantization)),
            ("input", "ln(CPM+1)".to_string()),
            ("subsample", json(serde_json::json!(self.subsample))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let container = safetensors::serialize(tensors, Some(meta)).map_err(|e| bad(format!("{e}")))?;
        Ok(miniz_oxide::deflate::compress_to_vec_zlib(&container, 8))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let container = miniz_oxide::inflate::decompress_to_vec_zlib(bytes).map_err(|e| bad(format!("not a compressed atlas matrix ({e:?})")))?;
        let (_, header) = SafeTensors::read_metadata(&container).map_err(|e| bad(format!("not a safetensors container: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).map(String::as_str).ok_or_else(|| bad(format!("metadata '{k}' missing")));
        if get("format")? != FORMAT {
            return Err(bad(format!("format is '{}', not '{FORMAT}'", get("format")?)));
        }
        let version: u32 = get("format_version")?.parse().map_err(|_| bad("format_version is not a number"))?;
        if version != FORMAT_VERSION {
            return Err(SclabelError::UnsupportedVersion {
                file: "atlas matrix".into(),
                what: "format version".into(),
                found: version.to_string(),
                supported: format!("version {FORMAT_VERSION}"),
                advice: "update sclabel, or rebuild the atlas with this one".into(),
            });
        }
        fn parse<T: serde::de::DeserializeOwned>(s: &str, key: &str) -> Result<T> {
            serde_json::from_str(s).map_err(|e| bad(format!("metadata '{key}': {e}")))
        }
        let genes: Vec<String> = parse(get("genes")?, "genes")?;
        let cell_names: Vec<String> = parse(get("cell_names")?, "cell_names")?;
        let classes: Vec<String> = parse(get("classes")?, "classes")?;
        let domain_key: Option<String> = parse(get("domain_key")?, "domain_key")?;
        let domains: Vec<String> = parse(get("domains")?, "domains")?;
        let quantization: serde_json::Value = parse(get("quantization")?, "quantization")?;
        let subsample: Option<usize> = parse(get("subsample")?, "subsample")?;
        let st = SafeTensors::deserialize(&container).map_err(|e| bad(format!("{e}")))?;
        let tensor = |name: &str| st.tensor(name).map_err(|e| bad(format!("tensor '{name}': {e}")));
        let n = cell_names.len();
        let t = tensor("indptr")?;
        let indptr: Vec<u64> = match t.dtype() {
            Dtype::U32 => t.data().chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64).collect(),
            Dtype::U64 => t.data().chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect(),
            other => return Err(bad(format!("indptr is {other:?}"))),
        };
        if indptr.len() != n + 1 || indptr[0] != 0 || indptr.windows(2).any(|w| w[1] < w[0]) {
            return Err(bad(format!("indptr does not describe {n} rows")));
        }
        let nnz = indptr[n] as usize;
        let gaps = tensor("gaps")?;
        let mut indices = Vec::with_capacity(nnz);
        let (mut pos, data) = (0usize, gaps.data());
        let n_genes = genes.len() as u64;
        for r in 0..n {
            let mut column = 0u64;
            for k in indptr[r]..indptr[r + 1] {
                let (mut gap, mut shift) = (0u64, 0);
                loop {
                    let byte = *data.get(pos).ok_or_else(|| bad("gaps end early"))?;
                    pos += 1;
                    gap |= u64::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 || shift > 35 {
                        break;
                    }
                }
                column = if k == indptr[r] { gap } else { column + gap };
                if column >= n_genes || (k > indptr[r] && gap == 0) {
                    return Err(bad(format!("row {r}: gene column {column} out of order or past {n_genes} genes")));
                }
                indices.push(column as u32);
            }
        }
        if pos != data.len() {
            return Err(bad("gaps hold more values than indptr says"));
        }
        let v = tensor("values")?;
        let values: Vec<f32> = match (v.dtype(), quantization.get("kind").and_then(|k| k.as_str())) {
            (Dtype::U8, Some("q8")) => {
                let max = quantization.get("max").and_then(serde_json::Value::as_f64).ok_or_else(|| bad("q8 without max"))? as f32;
                v.data().iter().map(|&q| f32::from(q) * max / 255.0).collect()
            }
            (Dtype::F16, Some("f16")) => v.data().chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            (Dtype::F32, Some("f32")) => v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect(),
            (d, k) => return Err(bad(format!("values are {d:?} with quantization {k:?}"))),
        };
        if values.len() != nnz {
            return Err(bad(format!("{} values for {nnz} stored entries", values.len())));
        }
        let codes = |name: &str, k: usize| -> Result<Vec<i32>> {
            let t = tensor(name)?;
            let c: Vec<i32> = t.data().chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
            if t.dtype() != Dtype::I32 || c.len() != n || c.iter().any(|&x| x < -1 || x >= k as i32) {
                return Err(bad(format!("'{name}' are not {n} codes below {k}")));
            }
            Ok(c)
        };
        let labels = codes("labels", classes.len())?;
        let domain_codes = if domain_key.is_some() { codes("domains", domains.len())? } else { Vec::new() };
        Ok(Self {
            x: CsrMatrix { n_rows: n, n_cols: genes.len(), indptr, indices, data: values },
            genes,
            cell_names,
            label_key: get("label_key")?.to_string(),
            classes,
            labels,
            domain_key,
            domains,
            domain_codes,
            subsample,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{synthetic_counts, SyntheticSpec};

    fn sample() -> (AnnData, CsrMatrix) {
        let adata = synthetic_counts(&SyntheticSpec { n_cells: 300, n_genes: 200, n_classes: 4, seed: 3, ..Default::default() });
        let (x, _) = crate::scnym::api::prepare_input(&adata.x, &adata.var_names, true, "reference").unwrap();
        (adata, x)
    }

    #[test]
    fn atlas_matrix_round_trips_and_quantises_within_bounds() {
        let (adata, x) = sample();
        let key = "cell_type".to_string();
        let m = AtlasMatrix::from_reference(&adata, &x, &adata.var_names, &key, Some("batch"), None, 0).unwrap();
        assert_eq!(m.domains.len(), 2);
        for enc in [ValueEncoding::F32, ValueEncoding::F16, ValueEncoding::Q8] {
            let back = AtlasMatrix::from_bytes(&m.to_bytes(enc).unwrap()).unwrap();
            assert_eq!((back.x.indptr.clone(), back.x.indices.clone()), (m.x.indptr.clone(), m.x.indices.clone()));
            assert_eq!(
                (back.labels.clone(), back.classes.clone(), back.genes.clone(), back.cell_names.clone()),
                (m.labels.clone(), m.classes.clone(), m.genes.clone(), m.cell_names.clone())
            );
            assert_eq!((back.domain_codes.clone(), back.domains.clone()), (m.domain_codes.clone(), m.domains.clone()));
            let max = m.x.data.iter().fold(0f32, |a, &b| a.max(b));
            let tol = match enc {
                ValueEncoding::F32 => 0.0,
                ValueEncoding::F16 => max * 1e-3,
                ValueEncoding::Q8 => max / 510.0 + 1e-6,
            };
            let worst = m.x.data.iter().zip(&back.x.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tol, "{enc:?}: max error {worst} > {tol}");
            assert!(back.x.data.iter().all(|&v| v > 0.0), "{enc:?}: a stored value became 0");
        }
    }

    /// Keeping genes gives the kept columns of the whole matrix, in the atlas's order.
    #[test]
    fn atlas_matrix_keeps_the_genes_asked_for() {
        let (adata, x) = sample();
        let m = AtlasMatrix::from_reference(&adata, &x, &adata.var_names, "cell_type", None, None, 0).unwrap();
        let m = AtlasMatrix::from_bytes(&m.to_bytes(ValueEncoding::F32).unwrap()).unwrap();
        let asked: Vec<String> = [150, 3, 77, 9999].iter().map(|&j| adata.var_names.get(j).cloned().unwrap_or_else(|| "not_a_gene".into())).collect();
        let kept = m.clone().keep_genes(&asked).unwrap();
        assert_eq!(kept.genes, [3, 77, 150].map(|j| adata.var_names[j].clone()));
        assert_eq!(kept.x, m.x.select_cols(&[3, 77, 150]));
        assert_eq!((kept.labels, kept.cell_names), (m.labels.clone(), m.cell_names.clone()));
        let e = m.keep_genes(&["not_a_gene".into()]).unwrap_err();
        assert_eq!(e.code(), "genes", "{e}");
    }

    #[test]
    fn atlas_matrix_stores_rows_whose_columns_come_in_any_order() {
        // scipy CSR may list a row's columns in any order (scanpy's pbmc68k_reduced .raw: descending).
        let (adata, x) = sample();
        let mut rev = x.clone();
        for r in 0..rev.n_rows {
            let (a, b) = (rev.indptr[r] as usize, rev.indptr[r + 1] as usize);
            rev.indices[a..b].reverse();
            rev.data[a..b].reverse();
        }
        let key = "cell_type".to_string();
        let m = AtlasMatrix::from_reference(&adata, &rev, &adata.var_names, &key, None, None, 0).unwrap();
        let back = AtlasMatrix::from_bytes(&m.to_bytes(ValueEncoding::F32).unwrap()).unwrap();
        assert_eq!(back.x, x);
    }

    #[test]
    fn atlas_matrix_subsamples_per_class_and_refuses_damage() {
        let (adata, x) = sample();
        let key = "cell_type".to_string();
        let m = AtlasMatrix::from_reference(&adata, &x, &adata.var_names, &key, None, Some(20), 7).unwrap();
        assert!(m.class_counts().iter().all(|&c| c <= 20), "{:?}", m.class_counts());
        let e = AtlasMatrix::from_reference(&adata, &x, &adata.var_names, &key, None, Some(0), 7).err().unwrap();
        assert!(e.to_string().contains("max_cells_per_class") && e.to_string().contains("keep no cell"), "{e}");
        assert_eq!(m.x.n_rows, m.labels.len());
        let bytes = m.to_bytes(ValueEncoding::Q8).unwrap();
        let mut broken = bytes.clone();
        broken[bytes.len() / 2] ^= 0xff;
        assert!(matches!(AtlasMatrix::from_bytes(&broken), Err(SclabelError::InvalidFile { .. })));
        assert!(matches!(AtlasMatrix::from_bytes(&bytes[..bytes.len() - 10]), Err(SclabelError::InvalidFile { .. })));
        assert!(matches!(AtlasMatrix::from_bytes(b"not an atlas"), Err(SclabelError::InvalidFile { .. })));
        let a = m.to_anndata();
        assert_eq!(a.n_obs(), m.x.n_rows);
        assert_eq!(a.obs.get(&key).unwrap().to_strings().iter().flatten().count(), m.x.n_rows);
    }
}
