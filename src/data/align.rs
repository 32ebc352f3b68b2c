//! Aligning a data set's genes to a model's gene list (columns in the model's order; model genes the
//! data lacks stay zero; data-only genes are dropped), with a report of the overlap.
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Below this fraction of the model's genes found in the data, callers should warn.
pub const LOW_OVERLAP_FRACTION: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneOverlap {
    pub model_genes: usize,
    pub data_genes: usize,
    pub shared: usize,
    /// shared / model_genes.
    pub fraction: f64,
    /// Up to 20 model genes the data lacks, to show the user.
    pub missing_examples: Vec<String>,
    pub low: bool,
}

/// Returns an error naming the first duplicated gene.
pub fn check_unique(genes: &[String], what: &str) -> Result<()> {
    let mut seen = HashMap::with_capacity(genes.len());
    for (i, g) in genes.iter().enumerate() {
        if let Some(j) = seen.insert(g.as_str(), i) {
            return Err(SclabelError::Genes(format!(
                "{what} has duplicate gene name '{g}' (positions {j} and {i}); make names unique (e.g. var_names_make_unique) first"
            )));
        }
    }
    Ok(())
}

/// For each data gene, its column among `model_genes` (if any), with the overlap report. Errors
/// on duplicate names or when no gene is shared.
pub fn gene_map(data_genes: &[String], model_genes: &[String]) -> Result<(Vec<Option<u32>>, GeneOverlap)> {
    check_unique(data_genes, "the data")?;
    check_unique(model_genes, "the model")?;
    let model_pos: HashMap<&str, u32> = model_genes.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
    let map: Vec<Option<u32>> = data_genes.iter().map(|g| model_pos.get(g.as_str()).copied()).collect();
    let shared = map.iter().filter(|m| m.is_some()).count();
    let in_data: std::collections::HashSet<&str> = data_genes.iter().map(String::as_str).collect();
    let fraction = if model_genes.is_empty() { 0.0 } else { shared as f64 / model_genes.len() as f64 };
    let overlap = GeneOverlap {
        model_genes: model_genes.len(),
        data_genes: data_genes.len(),
        shared,
        fraction,
        missing_examples: model_genes.iter().filter(|g| !in_data.contains(g.as_str())).take(20).cloned().collect(),
        low: fraction < LOW_OVERLAP_FRACTION,
    };
    if shared == 0 {
        return Err(SclabelError::Genes(format!(
            "no gene of the data ({} genes, e.g. '{}') is among the model's {} genes (e.g. '{}'); check species and gene identifiers (symbols vs Ensembl IDs)",
            data_genes.len(),
            data_genes.first().map(String::as_str).unwrap_or(""),
            model_genes.len(),
            model_genes.first().map(String::as_str).unwrap_or("")
        )));
    }
    Ok((map, overlap))
}

/// Reorders X's columns to `model_genes`. Errors on duplicate names or when no gene is shared.
pub fn align_genes(x: &CsrMatrix, data_genes: &[String], model_genes: &[String]) -> Result<(CsrMatrix, GeneOverlap)> {
    if data_genes.len() != x.n_cols {
        return Err(SclabelError::ShapeMismatch(format!("{} gene names for {} columns", data_genes.len(), x.n_cols)));
    }
    let (map, overlap) = gene_map(data_genes, model_genes)?;
    if data_genes == model_genes {
        return Ok((x.clone(), overlap));
    }
    let mut indptr = Vec::with_capacity(x.n_rows + 1);
    indptr.push(0u64);
    // Sized to the kept values (a model's genes are often a small part of a file's).
    let kept = x.indices.iter().filter(|&&j| map[j as usize].is_some()).count();
    let (mut indices, mut data) = (Vec::with_capacity(kept), Vec::with_capacity(kept));
    let mut row: Vec<(u32, f32)> = Vec::new();
    for i in 0..x.n_rows {
        let (idx, val) = x.row(i);
        row.clear();
        row.extend(idx.iter().zip(val).filter_map(|(&j, &v)| map[j as usize].map(|m| (m, v))));
        row.sort_unstable_by_key(|&(m, _)| m);
        for &(m, v) in &row {
            indices.push(m);
            data.push(v);
        }
        indptr.push(data.len() as u64);
    }
    Ok((CsrMatrix { n_rows: x.n_rows, n_cols: model_genes.len(), indptr, indices, data }, overlap))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn reorders_to_model_and_zero_fills() {
        let x = CsrMatrix::from_dense(2, 3, &[1., 2., 3., 4., 0., 6.]).unwrap();
        let (y, o) = align_genes(&x, &s(&["A", "B", "C"]), &s(&["C", "X", "A"])).unwrap();
        let mut dense = Vec::new();
        y.densify_rows_into(&[0, 1], &mut dense);
        assert_eq!(dense, vec![3., 0., 1., 6., 0., 4.]);
        assert_eq!((o.shared, o.model_genes, o.data_genes), (2, 3, 3));
        assert_eq!(o.missing_examples, s(&["X"]));
    }

    #[test]
    fn errors_on_duplicates_and_no_overlap() {
        let x = CsrMatrix::from_dense(1, 2, &[1., 2.]).unwrap();
        let e = align_genes(&x, &s(&["A", "A"]), &s(&["A"])).unwrap_err();
        assert!(e.to_string().contains("duplicate gene name 'A'"), "{e}");
        let e = align_genes(&x, &s(&["A", "B"]), &s(&["C"])).unwrap_err();
        assert!(e.to_string().contains("no gene"), "{e}");
    }
}
