//! Aligning a data set's genes to a model's gene list (columns in the model's order; model genes the
//! data lacks stay zero; data-only genes are dropped), with a report of the overlap.
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Below this fraction of the model's genes found in the data, callers should warn.
pub const LOW_OVERLAP_FRACTION: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GeneOverlap {
    pub model_genes: usize,
    pub data_genes: usize,
    pub shared: usize,
    /// shared / model_genes.
    pub fraction: f64,
    /// Up to 20 model genes the data lacks, to show the user.
    pub missing_examples: Vec<String>,
    pub low: bool,
    /// Which of the data's identifiers matched, and what they are, e.g. "var['feature_name']
    /// (gene symbols; the var index holds Ensembl IDs)".
    pub matched_by: String,
}

impl GeneOverlap {
    /// The warning a low overlap earns (`None` when it is not low): how many of the model's genes
    /// the data have, `consequence` (what becomes of the missing ones), and a few of them.
    pub fn low_warning(&self, consequence: &str) -> Option<String> {
        self.low.then(|| {
            format!(
                "only {} of the model's {} genes are in the data ({:.0}%); {consequence}, e.g. missing: {}",
                self.shared,
                self.model_genes,
                self.fraction * 100.0,
                self.missing_examples.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// What a list of gene identifiers holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneIdKind {
    /// Ensembl gene IDs (ENSG…, ENSMUSG…, with or without a version).
    Ensembl,
    Symbols,
}

impl GeneIdKind {
    /// Ensembl when at least 90% of the names look like Ensembl gene IDs.
    pub fn of(names: &[String]) -> Self {
        let ensembl = names.iter().filter(|n| is_ensembl(n)).count();
        if !names.is_empty() && ensembl * 10 >= names.len() * 9 {
            GeneIdKind::Ensembl
        } else {
            GeneIdKind::Symbols
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            GeneIdKind::Ensembl => "Ensembl IDs",
            GeneIdKind::Symbols => "gene symbols",
        }
    }
}

/// ENS, an optional species code of capitals, G, digits, an optional .version.
fn is_ensembl(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("ENS") else { return false };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_uppercase() && c != 'G');
    let Some(digits) = rest.strip_prefix('G') else { return false };
    let digits = digits.split('.').next().unwrap_or("");
    digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether no name repeats.
pub fn is_unique(names: &[String]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.iter().all(|g| seen.insert(g.as_str()))
}

/// Of the data's gene identifiers (`ids`: the var index first, then var's other identifier
/// columns), the one that shares the most genes with `wanted`, and a sentence saying which it was
/// and what it holds. The index wins ties; other columns with duplicate values are passed over
/// (they can't name genes one-to-one).
pub fn best_gene_ids<'a>(ids: &[(&'a str, &'a [String])], wanted: &[String]) -> (&'a [String], String) {
    let wanted_set: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let mut best = 0usize;
    let mut best_shared = ids.first().map_or(0, |(_, v)| v.iter().filter(|g| wanted_set.contains(g.as_str())).count());
    for (k, (_, v)) in ids.iter().enumerate().skip(1) {
        let shared = v.iter().filter(|g| wanted_set.contains(g.as_str())).count();
        if shared > best_shared && is_unique(v) {
            (best, best_shared) = (k, shared);
        }
    }
    let (name, names) = ids[best];
    let kind = GeneIdKind::of(names).describe();
    let how = if best == 0 {
        format!("{name} ({kind})")
    } else {
        let index_kind = GeneIdKind::of(ids[0].1).describe();
        format!(
            "var['{name}'] ({kind}; the var index holds {index_kind} and shares {} genes)",
            ids[0].1.iter().filter(|g| wanted_set.contains(g.as_str())).count()
        )
    };
    (names, how)
}

/// Returns an error naming the first duplicated gene.
pub fn check_unique(genes: &[String], what: &str) -> Result<()> {
    let mut seen = HashMap::with_capacity(genes.len());
    for (i, g) in genes.iter().enumerate() {
        if let Some(j) = seen.insert(g.as_str(), i) {
            return Err(SclabelError::genes(format!(
                "{what} has duplicate gene name '{g}' (positions {j} and {i}); make names unique (e.g. var_names_make_unique) first"
            ))
            .at_gene(g.as_str()));
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
        matched_by: "var index".into(),
    };
    if shared == 0 {
        return Err(SclabelError::genes(format!(
            "no gene of the data ({} genes, {}, e.g. '{}') is among the model's {} genes ({}, e.g. '{}'); check the species, and name the var column that holds the model's kind of identifier (var_names / --var-names)",
            data_genes.len(),
            GeneIdKind::of(data_genes).describe(),
            data_genes.first().map(String::as_str).unwrap_or(""),
            model_genes.len(),
            GeneIdKind::of(model_genes).describe(),
            model_genes.first().map(String::as_str).unwrap_or("")
        )));
    }
    Ok((map, overlap))
}

/// Reorders X's columns to `model_genes`. Errors on duplicate names or when no gene is shared.
pub fn align_genes(x: &CsrMatrix, data_genes: &[String], model_genes: &[String]) -> Result<(CsrMatrix, GeneOverlap)> {
    if data_genes.len() != x.n_cols {
        return Err(SclabelError::shape(format!("{} gene names for {} columns", data_genes.len(), x.n_cols)));
    }
    let (map, overlap) = gene_map(data_genes, model_genes)?;
    // Sized to the kept values (a model's genes are often a small part of a file's); all of them
    // when the genes are the same (a copy).
    let same = data_genes == model_genes;
    let kept = if same { x.nnz() } else { x.indices.iter().filter(|&&j| map[j as usize].is_some()).count() };
    crate::memory::reserve(
        &format!("{} cells × the model's {} genes ({kept} stored values)", x.n_rows, model_genes.len()),
        kept as u64 * 8 + (x.n_rows as u64 + 1) * 8,
        "give the .h5ad itself rather than a loaded data set (predictScnym and trainScnym read files a block of cells at a time), or use fewer cells",
    )?;
    if same {
        return Ok((x.clone(), overlap));
    }
    let mut indptr = Vec::with_capacity(x.n_rows + 1);
    indptr.push(0u64);
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

    #[test]
    fn ensembl_ids_are_told_from_symbols_and_the_best_column_matches() {
        assert!(is_ensembl("ENSG00000141510") && is_ensembl("ENSMUSG00000059552.7") && is_ensembl("ENSDARG00000038459"));
        assert!(!is_ensembl("TP53") && !is_ensembl("ENSA") && !is_ensembl("ENSG"));
        let index = s(&["ENSG00000141510", "ENSG00000012048", "ENSG00000139618"]);
        let symbols = s(&["TP53", "BRCA1", "BRCA2"]);
        assert_eq!(GeneIdKind::of(&index), GeneIdKind::Ensembl);
        assert_eq!(GeneIdKind::of(&symbols), GeneIdKind::Symbols);
        // A symbol-based model against a CELLxGENE-style file: feature_name matches.
        let ids = [("var index", index.as_slice()), ("feature_name", symbols.as_slice())];
        let (names, how) = best_gene_ids(&ids, &s(&["BRCA2", "TP53", "MYC"]));
        assert_eq!(names, symbols.as_slice());
        assert_eq!(how, "var['feature_name'] (gene symbols; the var index holds Ensembl IDs and shares 0 genes)");
        // An Ensembl model keeps the index; a column with duplicates is never chosen.
        let (names, how) = best_gene_ids(&ids, &s(&["ENSG00000139618"]));
        assert_eq!((names, how.as_str()), (index.as_slice(), "var index (Ensembl IDs)"));
        let dup = s(&["TP53", "TP53", "BRCA2"]);
        let ids = [("var index", index.as_slice()), ("feature_name", dup.as_slice())];
        assert_eq!(best_gene_ids(&ids, &s(&["TP53", "BRCA2"])).0, index.as_slice());
    }
}
