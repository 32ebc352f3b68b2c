//! Label and domain encoding, scNym's way: classes in sorted order, cells labelled `Unlabeled`
//! form the unlabelled (target) set, domains coded over all cells.
use crate::data::anndata::Column;
use crate::error::{Result, SclabelError};
use serde::{Deserialize, Serialize};

/// The label that marks a cell as unlabelled (scNym's `UNLABELED_TOKEN`).
pub const UNLABELED: &str = "Unlabeled";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelEncoding {
    /// Class names in sorted (byte-wise) order, without `Unlabeled`.
    pub class_names: Vec<String>,
    /// Per cell: class index, or −1 for unlabelled cells.
    pub codes: Vec<i32>,
    /// Cells per class.
    pub counts: Vec<usize>,
}

impl LabelEncoding {
    pub fn n_classes(&self) -> usize {
        self.class_names.len()
    }
    pub fn is_unlabeled(&self, cell: usize) -> bool {
        self.codes[cell] < 0
    }
    pub fn n_labeled(&self) -> usize {
        self.codes.iter().filter(|&&c| c >= 0).count()
    }
}

/// Encodes a label column. Cells labelled `Unlabeled` or with a label in `exclude` (e.g.
/// `unlabeled_QCfail`) get code −1. A missing value is an error that names the cell, since
/// silently treating it as a class or as unlabelled would both be guesses.
pub fn encode_labels(column: &Column, column_name: &str, obs_names: &[String], exclude: &[String]) -> Result<LabelEncoding> {
    let values = column.to_strings();
    if let Some(i) = values.iter().position(Option::is_none) {
        let cell = obs_names.get(i).map(String::as_str).unwrap_or("?");
        return Err(SclabelError::labels(format!(
            "cell '{cell}' (row {i}) has no value in label column '{column_name}'; set it to '{UNLABELED}' to treat it as unlabelled, or drop the cell"
        )));
    }
    // An empty string is not a class name (a bundle could not list it): refused like a missing value.
    if let Some(i) = values.iter().position(|v| v.as_deref().is_some_and(|v| v.trim().is_empty())) {
        let cell = obs_names.get(i).map(String::as_str).unwrap_or("?");
        return Err(SclabelError::labels(format!(
            "cell '{cell}' (row {i}) has an empty label in column '{column_name}'; set it to '{UNLABELED}' to treat it as unlabelled, give it a class, or drop the cell"
        )));
    }
    let is_class = |v: &String| v.as_str() != UNLABELED && !exclude.contains(v);
    let mut class_names: Vec<String> = values.iter().flatten().filter(|v| is_class(v)).cloned().collect();
    class_names.sort();
    class_names.dedup();
    let codes: Vec<i32> = values.iter().flatten().map(|v| if is_class(v) { class_names.binary_search(v).unwrap() as i32 } else { -1 }).collect();
    let mut counts = vec![0usize; class_names.len()];
    for &c in codes.iter().filter(|&&c| c >= 0) {
        counts[c as usize] += 1;
    }
    Ok(LabelEncoding { class_names, codes, counts })
}

/// Checks that labels can train a classifier: at least two classes with labelled cells.
pub fn check_trainable(labels: &LabelEncoding, column_name: &str) -> Result<()> {
    match labels.n_classes() {
        0 => Err(SclabelError::labels(format!("label column '{column_name}' has no labelled cells (all are '{UNLABELED}')")).in_column(column_name)),
        1 => {
            Err(SclabelError::labels(format!("label column '{column_name}' has a single class ('{}'); a classifier needs at least two", labels.class_names[0]))
                .in_column(column_name))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEncoding {
    /// Domain names in sorted order (or `["labeled", "unlabeled"]` when no column was given).
    pub names: Vec<String>,
    /// Per cell domain index.
    pub codes: Vec<i32>,
}

impl DomainEncoding {
    pub fn n_domains(&self) -> usize {
        self.names.len()
    }
}

/// The distinct values in sorted order, and each value's index among them.
pub fn sorted_codes(values: &[String]) -> (Vec<String>, Vec<i32>) {
    let mut names = values.to_vec();
    names.sort();
    names.dedup();
    let codes = values.iter().map(|v| names.binary_search(v).expect("present") as i32).collect();
    (names, codes)
}

/// Encodes domains. With a column: its values over all cells in sorted order. Without one:
/// labelled cells are domain 0 and unlabelled cells domain 1 when there are any, else one domain.
pub fn encode_domains(column: Option<(&Column, &str)>, labels: &LabelEncoding) -> Result<DomainEncoding> {
    match column {
        Some((column, name)) => {
            let values = column.to_strings();
            if let Some(i) = values.iter().position(Option::is_none) {
                return Err(SclabelError::labels(format!("cell at row {i} has no value in domain column '{name}'")).in_column(name).at_row(i));
            }
            let (names, codes) = sorted_codes(&values.into_iter().flatten().collect::<Vec<_>>());
            Ok(DomainEncoding { names, codes })
        }
        None => {
            let any_unlabeled = labels.codes.iter().any(|&c| c < 0);
            let names = if any_unlabeled { vec!["labeled".into(), "unlabeled".into()] } else { vec!["labeled".into()] };
            let codes = labels.codes.iter().map(|&c| i32::from(c < 0)).collect();
            Ok(DomainEncoding { names, codes })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(v: &[&str]) -> Column {
        Column::Strings(v.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn sorted_classes_and_unlabeled() {
        let names: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let l = encode_labels(&col(&["T", "B", "Unlabeled", "T", "NK"]), "ct", &names, &[]).unwrap();
        assert_eq!(l.class_names, vec!["B", "NK", "T"]);
        assert_eq!(l.codes, vec![2, 0, -1, 2, 1]);
        assert_eq!(l.counts, vec![1, 1, 2]);
        let d = encode_domains(None, &l).unwrap();
        assert_eq!(d.codes, vec![0, 0, 1, 0, 0]);
        assert_eq!(d.n_domains(), 2);
        let d = encode_domains(Some((&col(&["v3", "v2", "v2", "v1", "v3"]), "chem")), &l).unwrap();
        assert_eq!(d.names, vec!["v1", "v2", "v3"]);
        assert_eq!(d.codes, vec![2, 1, 1, 0, 2]);
    }

    #[test]
    fn missing_label_and_single_class_are_errors() {
        let c = Column::Categorical { codes: vec![0, -1], categories: vec!["T".into()] };
        let e = encode_labels(&c, "ct", &["a".into(), "b".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("cell 'b'"), "{e}");
        let l = encode_labels(&col(&["T", "T", "QC"]), "ct", &["a".into(), "b".into(), "c".into()], &["QC".into()]).unwrap();
        assert_eq!(l.codes, vec![0, 0, -1]);
        assert!(check_trainable(&l, "ct").unwrap_err().to_string().contains("single class"));
        let e = encode_labels(&col(&["T", " ", "B"]), "ct", &["a".into(), "b".into(), "c".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("cell 'b' (row 1) has an empty label"), "{e}");
    }
}
