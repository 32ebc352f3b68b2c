//! The native CLI: `train` on files (trained from the files directly, read a block of cells at a
//! time, with a gene list, a query and its predictions); `train` → `predict` → `explain` and
//! `audit`, with annotated copies of the input read back, on the demo's reference.
#![cfg(feature = "cli")]
use std::path::Path;
use std::process::Command;

/// Runs the CLI expecting it to fail; returns what it printed.
fn sclabel_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sclabel")).args(args).output().expect("the sclabel binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "sclabel {} should fail: {text}", args.join(" "));
    text
}

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
    // Saved as Windows editors save it: a byte-order mark and CRLF line ends (neither joins a name).
    std::fs::write(&genes, "\u{feff}".to_string() + &shared.join("\r\n") + "\r\nnot_a_gene\r\n").unwrap();
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

/// The demo's reference (scanpy's pbmc68k_reduced: 700 cells, `bulk_labels`, log-normalised
/// `.raw`), which `scripts/setup.sh` fetches before the tests run.
fn demo_reference() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/data/pbmc68k_reduced.h5ad");
    assert!(p.exists(), "{} missing: run scripts/setup.sh (it fetches the demo's data)", p.display());
    p
}

fn obs(path: &Path) -> sclabel::data::anndata::AnnData {
    sclabel::io::h5ad::read_h5ad(&std::fs::read(path).unwrap(), "annotated").unwrap()
}

#[test]
fn train_predict_explain_with_an_annotated_copy() {
    let input = demo_reference();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/cli_predict");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |p: &Path| p.display().to_string();
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"n_epochs": 2}"#).unwrap();
    let model = dir.join("model.safetensors");
    let common = ["--label-key", "bulk_labels", "--use-raw", "--normalize"];
    sclabel(&[&["--quiet", "train", "--reference", &p(&input), "--preset", "no_ssl", "--config", &p(&config), "--out", &p(&model)][..], &common].concat());
    let (csv, annotated) = (dir.join("predictions.csv"), dir.join("annotated.h5ad"));
    let (model_path, input_path, csv_path) = (p(&model), p(&input), p(&csv));
    let predict = ["--quiet", "predict", "--model", &model_path, "--input", &input_path, "--use-raw", "--normalize", "--out", &csv_path];
    sclabel(&[&predict[..], &["--annotate-h5ad", &p(&annotated)]].concat());
    let header = std::fs::read_to_string(&csv).unwrap().lines().next().unwrap().to_string();
    assert!(header.starts_with("cell,scNym,scNym_confidence,"), "{header}");
    // The copy holds what scNym writes into an AnnData, under the core's names, and the input's own.
    let (before, after) = (obs(&input), obs(&annotated));
    assert_eq!(after.obs.get("scNym").unwrap().to_strings().len(), 700);
    assert!(after.obs.get("scNym_confidence").is_ok() && after.obs.get("bulk_labels").is_ok());
    assert_eq!(after.obs_names, before.obs_names);
    let file = hdf5_pure::File::from_bytes(std::fs::read(&annotated).unwrap()).unwrap();
    assert_eq!(file.dataset("obsm/X_scnym").unwrap().shape().unwrap(), vec![700, 256]);
    // A negative number is read as the option's value and refused with its range, not taken for a flag.
    let e = sclabel_fails(&[&predict[..], &["--unassigned-below", "-1"]].concat());
    assert!(e.contains("unassigned_below") && e.contains("between 0 and 1"), "{e}");
    let saliency = dir.join("saliency.csv");
    sclabel(&[
        "--quiet",
        "explain",
        "--model",
        &p(&model),
        "--input",
        &p(&input),
        "--label-key",
        "bulk_labels",
        "--target",
        "CD14+ Monocyte",
        "--n-samples",
        "8",
        "--n-cells",
        "20",
        "--use-raw",
        "--normalize",
        "--out",
        &p(&saliency),
    ]);
    let rows = std::fs::read_to_string(&saliency).unwrap();
    assert!(rows.starts_with("gene,saliency,rank"), "{}", &rows[..rows.len().min(80)]);
}

#[test]
fn audit_with_an_annotated_copy() {
    let input = demo_reference();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/cli_audit");
    std::fs::create_dir_all(&dir).unwrap();
    let p = |p: &Path| p.display().to_string();
    let (csv, annotated) = (dir.join("audit.csv"), dir.join("annotated.h5ad"));
    let (input_path, csv_path) = (p(&input), p(&csv));
    let audit = ["--quiet", "audit", "--input", &input_path, "--label-key", "bulk_labels", "--use-raw", "--out", &csv_path];
    let log = sclabel(&[&audit[..], &["--n-epochs", "3", "--n-top-genes", "300", "--exclude-label", "Dendritic", "--annotate-h5ad", &p(&annotated)]].concat());
    assert!(log.contains("cells audited"), "{log}");
    let e = sclabel_fails(&[&audit[..], &["--genes", &p(&dir.join("g.csv")), "--min-counts", "-1"]].concat());
    assert!(e.contains("gene_scores.min_counts"), "{e}");
    let after = obs(&annotated);
    let labels = after.obs.get("bulk_labels").unwrap().to_strings();
    let category = after.obs.get("Annotation").unwrap().to_strings();
    // Cells of an excluded label are not audited: no category; every other cell has one.
    for (label, c) in labels.iter().zip(&category) {
        assert_eq!(c.is_none(), label.as_deref() == Some("Dendritic"), "{label:?}: {c:?}");
        assert!(c.as_deref().is_none_or(|c| ["easy-to-learn", "ambiguous", "hard-to-learn"].contains(&c)), "{c:?}");
    }
    assert!(after.obs.get("conf").is_ok() && after.obs.get("var").is_ok() && after.obs.get("corrected_label").is_ok());
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1 + category.iter().filter(|c| c.is_some()).count());
}
