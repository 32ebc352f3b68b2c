//! The native CLI's `train` on files: trained from the files directly (read a block of cells at a
//! time), with a gene list, a query and its predictions.
#![cfg(feature = "cli")]
use std::path::Path;
use std::process::Command;

fn sclabel(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sclabel")).args(args).output().expect("the sclabel binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "sclabel {}: {text}", args.join(" "));
    text
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
fn train_from_files_with_a_gene_list_then_predict_the_query() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/cli_train");
    std::fs::create_dir_all(&dir).unwrap();
    let (reference, query) = (data.join("pancreas_xin.h5ad"), data.join("pancreas_wang.h5ad"));
    let names = |p: &Path| sclabel::io::h5ad::read_h5ad(&std::fs::read(p).unwrap(), "names").unwrap().var_names;
    let query_genes = names(&query);
    let shared: Vec<String> = names(&reference).into_iter().filter(|g| query_genes.contains(g)).take(120).collect();
    let genes = dir.join("genes.txt");
    std::fs::write(&genes, shared.join("\n") + "\nnot_a_gene\n").unwrap();
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"n_epochs": 3}"#).unwrap();
    let (model, predictions) = (dir.join("model.safetensors"), dir.join("predictions.csv"));
    let p = |p: &Path| p.display().to_string();
    let log = sclabel(&[
        "--quiet",
        "train",
        "--reference",
        &p(&reference),
        "--query",
        &p(&query),
        "--label-key",
        "cell_type",
        "--normalize",
        "--genes",
        &p(&genes),
        "--config",
        &p(&config),
        "--seed",
        "1",
        "--out",
        &p(&model),
        "--predictions",
        &p(&predictions),
    ]);
    assert!(log.contains("120 of the 121 genes in options.genes"), "{log}");
    let info = sclabel(&["info", &p(&model)]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap_or_else(|e| panic!("sclabel info prints JSON ({e}): {info}"));
    assert_eq!(info["arch"]["n_genes"], 120, "{info}");
    let rows = std::fs::read_to_string(&predictions).unwrap();
    assert_eq!(rows.trim().lines().count(), 1 + 501, "a header and one line per query cell");
}
