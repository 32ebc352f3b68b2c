//! Several labelled references → one atlas reference: each brought to ln(CPM+1) over its own genes
//! (library size is a whole-cell quantity), then restricted to the genes all of them share (in the
//! first one's order, as scNym's `join="inner"`), their labels harmonised through one mapping into
//! one vocabulary, and a `dataset` column added (`name` or `name:domain`) for the adversary.
use std::collections::{BTreeMap, HashSet};

use crate::data::align::{align_genes, check_unique};
use crate::data::anndata::{AnnData, Column, ObsTable};
use crate::data::labels::sorted_codes;
use crate::data::matrix::CsrMatrix;
use crate::scnym::api::prepare_input_with;
use crate::{Result, SclabelError};

/// The combined reference's obs columns.
pub const LABEL_COLUMN: &str = "cell_type";
pub const DATASET_COLUMN: &str = "dataset";

pub struct ReferencePart<'a> {
    pub name: String,
    pub adata: &'a AnnData,
    pub label_key: String,
    /// A column of the part's own domains (e.g. chemistry), kept as `name:domain`.
    pub domain_key: Option<String>,
    pub use_raw: bool,
    pub normalize: bool,
}

/// `label_map`: source label → harmonised label; `None` drops the cells (e.g. QC failures, "NA").
/// Labels absent from a non-empty map are an error naming them, so no vocabulary slips through
/// unharmonised; an empty map keeps labels as they are.
pub fn combine_references(parts: &[ReferencePart], label_map: &BTreeMap<String, Option<String>>) -> Result<(AnnData, Vec<String>)> {
    if parts.is_empty() {
        return Err(SclabelError::InvalidOption { option: "reference".into(), reason: "no reference given".into() });
    }
    let mut warnings = Vec::new();
    let mut prepared = Vec::new();
    for p in parts {
        let (x, genes) = p.adata.matrix(p.use_raw)?;
        check_unique(genes, &p.name)?;
        let (x, _) = prepare_input_with(x, genes, &*p.adata.value_stats(p.use_raw)?, p.normalize, &p.name)?;
        prepared.push((x, genes.clone()));
    }
    let mut shared: Vec<String> = prepared[0].1.clone();
    for (_, genes) in &prepared[1..] {
        let set: HashSet<&String> = genes.iter().collect();
        shared.retain(|g| set.contains(g));
    }
    if shared.is_empty() {
        return Err(SclabelError::genes(format!(
            "the references ({}) share no gene names",
            parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    for (p, (_, genes)) in parts.iter().zip(&prepared) {
        if shared.len() * 2 < genes.len() {
            warnings.push(format!("{}: {} of its {} genes are shared by all references; the rest are dropped", p.name, shared.len(), genes.len()));
        }
    }
    let (mut blocks, mut labels, mut datasets, mut names) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut unmapped = BTreeMap::<String, usize>::new();
    for (p, (x, genes)) in parts.iter().zip(&prepared) {
        let source = p.adata.obs.get(&p.label_key)?.to_strings();
        let domains = p.domain_key.as_ref().map(|k| p.adata.obs.get(k).map(|c| c.to_strings())).transpose()?;
        let mut keep = Vec::new();
        for (i, l) in source.iter().enumerate() {
            let Some(l) = l else { continue };
            let target = if label_map.is_empty() {
                Some(l.clone())
            } else {
                match label_map.get(l) {
                    Some(t) => t.clone(),
                    None => {
                        *unmapped.entry(format!("{}: '{l}'", p.name)).or_default() += 1;
                        continue;
                    }
                }
            };
            let Some(target) = target else { continue };
            keep.push(i);
            labels.push(target);
            let domain = domains.as_ref().and_then(|d| d[i].as_ref());
            datasets.push(match domain {
                Some(d) => format!("{}:{d}", p.name),
                None => p.name.clone(),
            });
            names.push(format!("{}:{}", p.name, p.adata.obs_names[i]));
        }
        let (aligned, _) = align_genes(&x.select_rows(&keep), genes, &shared)?;
        blocks.push(aligned);
    }
    if !unmapped.is_empty() {
        let list: Vec<String> = unmapped.iter().map(|(k, n)| format!("{k} ({n} cells)")).collect();
        return Err(SclabelError::labels(format!("labels missing from the label map (map them, or to null to drop them): {}", list.join(", "))));
    }
    let x = CsrMatrix::vstack(&blocks.iter().collect::<Vec<_>>())?;
    let categorical = |values: &[String]| {
        let (categories, codes) = sorted_codes(values);
        Column::Categorical { codes, categories }
    };
    let obs = ObsTable { columns: vec![(LABEL_COLUMN.into(), categorical(&labels)), (DATASET_COLUMN.into(), categorical(&datasets))] };
    let adata = AnnData { x, obs, obs_names: names, var_names: shared, var_ids: Vec::new(), x_stats: None, raw: None };
    adata.validate()?;
    Ok((adata, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{synthetic_counts, SyntheticSpec};

    #[test]
    fn combines_on_shared_genes_with_one_vocabulary() {
        let a = synthetic_counts(&SyntheticSpec { n_cells: 30, n_genes: 50, n_classes: 3, seed: 1, ..Default::default() });
        let mut b = synthetic_counts(&SyntheticSpec { n_cells: 20, n_genes: 40, n_classes: 2, seed: 2, ..Default::default() });
        b.var_names.reverse();
        let part =
            |name: &str, adata| ReferencePart { name: name.into(), adata, label_key: "cell_type".into(), domain_key: None, use_raw: false, normalize: true };
        let map: BTreeMap<String, Option<String>> =
            [("type_0", Some("T")), ("type_1", Some("B")), ("type_2", None)].into_iter().map(|(k, v)| (k.to_string(), v.map(String::from))).collect();
        let (c, warnings) = combine_references(&[part("a", &a), ReferencePart { domain_key: Some("batch".into()), ..part("b", &b) }], &map).unwrap();
        assert_eq!(c.var_names, a.var_names[..40].to_vec(), "the shared genes in the first reference's order");
        assert!(warnings.is_empty());
        assert_eq!(c.n_obs(), 20 + 20, "a's type_2 cells dropped");
        assert_eq!(c.obs.get("cell_type").unwrap().to_strings().iter().flatten().collect::<HashSet<_>>().len(), 2);
        let datasets: HashSet<String> = c.obs.get("dataset").unwrap().to_strings().into_iter().flatten().collect();
        assert_eq!(datasets, ["a", "b:a", "b:b"].map(String::from).into_iter().collect());
        // b's genes were reversed: a cell's value follows its gene name, not its column.
        let (bx, _) = crate::data::normalize::to_log_normalized(&b.x, &b.var_names, crate::data::normalize::TargetScale::Cpm).unwrap();
        let (expect, _) = align_genes(&bx, &b.var_names, &c.var_names).unwrap();
        let first_b = c.obs_names.iter().position(|n| n.starts_with("b:")).unwrap();
        assert_eq!(c.x.row(first_b), expect.row(0));
        let partial: BTreeMap<String, Option<String>> = [("type_0".to_string(), Some("T".to_string()))].into_iter().collect();
        let e = combine_references(&[part("a", &a)], &partial).err().unwrap().to_string();
        assert!(e.contains("a: 'type_1'") && e.contains("a: 'type_2'"), "{e}");
    }
}
