//! Highly variable genes against scanpy's own selection (../shared/reference-outputs): pbmc3k
//! without its QC-failed cells, ln(CP10k+1) over all 32,738 genes, `seurat`, top 2000. Ignored
//! where ../shared/data is absent (build.rs sets `shared_data`).
use std::collections::HashSet;

use sclabel::data::hvg::{highly_variable_genes, HvgOptions};
use sclabel::data::normalize::{to_log_normalized, TargetScale};
use sclabel::io::h5ad::read_h5ad;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pbmc3k_raw_labeled.h5ad");
const LIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference-outputs/annotatability-pbmc3k-audit/pbmc3k_hvg2000.txt");

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
fn seurat_hvgs_match_scanpy_on_pbmc3k() {
    let bytes = std::fs::read(DATA).unwrap_or_else(|e| panic!("{DATA}: {e}"));
    let list = std::fs::read_to_string(LIST).unwrap_or_else(|e| panic!("{LIST}: {e}"));
    let ad = read_h5ad(&bytes, "pbmc3k_raw_labeled.h5ad").unwrap();
    let labels = ad.obs.get("cell_type").unwrap().to_strings();
    let rows: Vec<usize> = (0..ad.n_obs()).filter(|&r| labels[r].as_deref() != Some("unlabeled_QCfail")).collect();
    assert_eq!(rows.len(), 2638);
    let (x, _) = to_log_normalized(&ad.x, &ad.var_names, TargetScale::Cp10k).unwrap();
    let hvg = highly_variable_genes(&x, &rows, None, &HvgOptions::default()).unwrap();
    let ours: HashSet<&str> = hvg.selected.iter().map(|&j| ad.var_names[j].as_str()).collect();
    let theirs: HashSet<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(theirs.len(), 2000);
    let shared = ours.intersection(&theirs).count();
    let only_ours: Vec<&&str> = ours.difference(&theirs).collect();
    let only_theirs: Vec<&&str> = theirs.difference(&ours).collect();
    let score = |g: &str| ad.var_names.iter().position(|v| v == g).map(|j| hvg.score[j]).unwrap_or(f64::NAN);
    eprintln!(
        "{} selected, {shared} shared with scanpy's 2000; only ours: {:?}; only scanpy's: {:?}",
        ours.len(),
        only_ours.iter().map(|g| (**g, score(g))).collect::<Vec<_>>(),
        only_theirs.iter().map(|g| (**g, score(g))).collect::<Vec<_>>()
    );
    assert!(shared as f64 >= 0.99 * 2000.0, "overlap {shared} of 2000");
}
