//! The block reader (`open_h5ad_rows`): blocks of cells with only some genes kept give exactly the
//! rows and columns of the whole-file reader, its value statistics equal those of the whole
//! matrix, and normalising kept genes with those totals equals normalising everything first.
//! On the shared data sets (CSR, dense, `.raw`; ignored where ../shared/data is absent) and on a
//! CSC file built in memory (always).
use std::io::Cursor;

use hdf5_pure::{AttrValue, FileBuilder};
use sclabel::data::anndata::AnnData;
use sclabel::data::matrix::CsrMatrix;
use sclabel::data::normalize::{detect, detect_from_stats, log_factor, rescale_in_place, to_log_normalized, TargetScale, ValueStats};
use sclabel::io::h5ad::{open_h5ad_rows, read_h5ad, ColumnMap, H5adRows, ReadSeekSource};

fn rows_of(bytes: &[u8], name: &str, use_raw: bool) -> H5adRows {
    let source = ReadSeekSource::new(Cursor::new(bytes.to_vec())).unwrap();
    open_h5ad_rows(source, name, use_raw).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every third gene, in reverse order.
fn some_genes(n: usize) -> (ColumnMap, Vec<usize>) {
    let cols: Vec<usize> = (0..n).step_by(3).rev().collect();
    let mut map = vec![None; n];
    cols.iter().enumerate().for_each(|(k, &j)| map[j] = Some(k as u32));
    (ColumnMap::new(map, cols.len()).unwrap(), cols)
}

/// The block reader against the whole-file reader on one matrix.
fn check(bytes: &[u8], name: &str, use_raw: bool, block: usize) {
    let whole: AnnData = read_h5ad(bytes, name).unwrap();
    let (x, genes) = whole.matrix(use_raw).unwrap();
    let rows = rows_of(bytes, name, use_raw);
    assert_eq!((rows.n_rows, rows.n_cols), (x.n_rows, x.n_cols));
    assert_eq!(&rows.var_names, genes);
    assert_eq!(rows.obs_names, whole.obs_names);
    let (keep, cols) = some_genes(x.n_cols);
    let want = x.select_cols(&cols);
    let parts: Vec<CsrMatrix> = (0..x.n_rows).step_by(block).map(|s| rows.read_rows(s..(s + block).min(x.n_rows), &keep).unwrap()).collect();
    let got = CsrMatrix::vstack(&parts.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(got, want, "{name}: kept genes of blocks of {block} cells");

    // Value statistics over all genes, whatever was kept.
    let stats = rows.value_stats().unwrap();
    let whole_stats = ValueStats::of(x);
    assert_eq!((stats.min, stats.max, stats.all_integer), (whole_stats.min, whole_stats.max, whole_stats.all_integer));
    for (a, b) in stats.sums.iter().zip(&whole_stats.sums) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{name}: {a} vs {b}");
    }
    let report = detect_from_stats(&stats, genes).unwrap();
    assert_eq!(report, detect(x, genes).unwrap());

    // Kept genes normalised with whole-cell totals = whole matrix normalised, then kept.
    if let Ok(factor) = log_factor(&report) {
        for target in [TargetScale::Cpm, TargetScale::Cp10k] {
            let mut kept = got.clone();
            rescale_in_place(&mut kept, factor, stats.totals(&report.normalization), target);
            let (full, _) = to_log_normalized(x, genes, target).unwrap();
            let want = full.select_cols(&cols);
            assert_eq!((kept.indptr.clone(), kept.indices.clone()), (want.indptr.clone(), want.indices.clone()));
            let worst = kept.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let differ = kept.data.iter().zip(&want.data).filter(|(a, b)| a != b).count();
            eprintln!(
                "{name} {target:?}: kept-gene normalisation differs from whole-then-kept by at most {worst:e} ({differ} of {} values differ at all)",
                kept.nnz()
            );
            assert!(worst < 1e-5, "{name}: kept-gene normalisation differs by {worst}");
        }
    }
}

/// A shared data set; the tests that read them are ignored where ../shared/data is absent.
fn shared(file: &str) -> Vec<u8> {
    let path = format!("{}/../shared/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
fn blocks_of_shared_files_equal_the_whole_file_reader() {
    check(&shared("pbmc3k_raw_labeled.h5ad"), "pbmc3k (CSR counts)", false, 1000);
    check(&shared("pbmc8k_200hvg.h5ad"), "pbmc8k (dense counts)", false, 777);
    check(&shared("pbmc68k_reduced.h5ad"), "pbmc68k .raw (old layout, log data)", true, 64);
    check(&shared("pancreas_xin.h5ad"), "xin (CSR log2)", false, 100);
}

/// CSC X, float64 values, int64 indices, 5 cells × 7 genes, plus a non-finite value file.
fn csc_file(values: [[f64; 7]; 5]) -> Vec<u8> {
    csc_file_with_var(values, false)
}

/// As `csc_file`; with `ensembl`, var's index holds Ensembl IDs and a categorical `feature_name`
/// column the symbols (CELLxGENE's layout), plus a numeric column.
fn csc_file_with_var(values: [[f64; 7]; 5], ensembl: bool) -> Vec<u8> {
    let s = |v: &str| AttrValue::VarLenString(v.into());
    let (mut colptr, mut rows, mut data) = (vec![0i64], Vec::new(), Vec::new());
    for j in 0..7 {
        for (i, row) in values.iter().enumerate() {
            if row[j] != 0.0 {
                rows.push(i as i64);
                data.push(row[j]);
            }
        }
        colptr.push(rows.len() as i64);
    }
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csc_matrix"));
    x.set_attr("shape", AttrValue::I64Array(vec![5, 7]));
    x.create_dataset("indptr").with_i64_data(&colptr);
    x.create_dataset("indices").with_i64_data(&rows);
    x.create_dataset("data").with_f64_data(&data);
    fb.add_group(x.finish());
    for (name, n) in [("obs", 5), ("var", 7)] {
        let mut g = fb.create_group(name);
        g.set_attr("_index", s("_index"));
        g.set_attr("encoding-type", s("dataframe"));
        let names: Vec<String> =
            if ensembl && name == "var" { (0..n).map(|i| format!("ENSG{:011}", 1000 + i)).collect() } else { (0..n).map(|i| format!("{name}{i}")).collect() };
        g.create_dataset("_index").with_vlen_strings(&names.iter().map(String::as_str).collect::<Vec<_>>());
        if ensembl && name == "var" {
            g.set_attr("column-order", AttrValue::VarLenStringArray(vec!["feature_name".into(), "mean".into()]));
            let mut c = g.create_group("feature_name");
            c.set_attr("encoding-type", s("categorical"));
            let symbols: Vec<String> = (0..n).map(|i| format!("SYM{i}")).collect();
            c.create_dataset("categories").with_vlen_strings(&symbols.iter().map(String::as_str).collect::<Vec<_>>());
            c.create_dataset("codes").with_i8_data(&(0..n as i8).collect::<Vec<_>>());
            g.add_group(c.finish());
            g.create_dataset("mean").with_f64_data(&[1.0; 7]);
        } else {
            g.set_attr("column-order", AttrValue::F64Array(vec![]));
        }
        fb.add_group(g.finish());
    }
    fb.finish().unwrap()
}

const COUNTS: [[f64; 7]; 5] = [
    [1.0, 0.0, 2.0, 0.0, 0.0, 7.0, 1.0],
    [0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0],
    [5.0, 0.0, 0.0, 0.0, 9.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 6.0],
];

#[test]
fn blocks_of_a_csc_file_equal_the_whole_file_reader() {
    let bytes = csc_file(COUNTS);
    check(&bytes, "csc.h5ad", false, 2);
    check(&bytes, "csc.h5ad", false, 5);
    let rows = rows_of(&bytes, "csc.h5ad", false);
    assert_eq!(rows.block_rows(), 5, "CSC is read as one block");
}

#[test]
fn a_non_finite_value_is_named_by_cell_and_gene() {
    let mut v = COUNTS;
    v[2][4] = f64::NAN;
    let bytes = csc_file(v);
    let rows = rows_of(&bytes, "nan.h5ad", false);
    let e = detect_from_stats(&rows.value_stats().unwrap(), &rows.var_names).unwrap_err();
    assert!(e.to_string().contains("cell 2, gene 'var4'"), "{e}");
    // A column map of the wrong width and rows past the end are errors, not panics.
    assert!(rows.read_rows(0..2, &ColumnMap::all(3)).is_err());
    assert!(rows.read_rows(4..9, &ColumnMap::all(7)).is_err());
}

#[test]
fn genes_match_by_the_var_column_a_model_shares() {
    use sclabel::data::align::GeneIdKind;
    use sclabel::scnym::api::kept_model_input;
    let bytes = csc_file_with_var(COUNTS, true);
    let ad = read_h5ad(&bytes, "cellxgene.h5ad").unwrap();
    assert_eq!(GeneIdKind::of(&ad.var_names), GeneIdKind::Ensembl);
    assert_eq!(ad.var_ids.len(), 1, "string columns only: {:?}", ad.var_ids.iter().map(|c| &c.0).collect::<Vec<_>>());
    assert_eq!(ad.var_ids[0].0, "feature_name");
    // A symbol-based model: matched by feature_name, and said so.
    let model_genes: Vec<String> = ["SYM5", "SYM0", "SYMX"].map(String::from).to_vec();
    let (x, _, overlap) = kept_model_input(&ad.x, &ad.gene_ids(), &ad.value_stats(false).unwrap(), &model_genes, true, "data").unwrap();
    assert_eq!(overlap.shared, 2);
    assert!(overlap.matched_by.starts_with("var['feature_name'] (gene symbols; the var index holds Ensembl IDs"), "{}", overlap.matched_by);
    // Cell 0 has genes 0 (1 count) and 5 (7 counts) of 11 in all: ln(CPM+1) over all genes.
    let (idx, val) = x.row(0);
    assert_eq!(idx, &[0, 1]);
    assert!((val[1] - (1e6f32 / 11.0 + 1.0).ln()).abs() < 1e-4, "{val:?}");
    // Naming the column: the symbols become the names, the index stays as an identifier.
    let named = ad.with_var_names_from("feature_name").unwrap();
    assert_eq!(named.var_names[3], "SYM3");
    assert_eq!(named.var_ids[0].1[3], "ENSG00000001003");
    let e = ad.with_var_names_from("gene_symbols").unwrap_err().to_string();
    assert!(e.contains("no string column 'gene_symbols'") && e.contains("feature_name"), "{e}");
    // The block reader has the same identifiers.
    let rows = rows_of(&bytes, "cellxgene.h5ad", false);
    assert_eq!(rows.var_ids, ad.var_ids);
}

/// A data set loaded with a gene selection gives what the full one gives: its X is the kept
/// columns, and normalising it (scNym's ln(CPM+1), Annotatability's ln(CP10k+1)) or preparing a
/// model's input from it equals doing so on the full matrix.
fn check_gene_selection(bytes: &[u8], name: &str, genes: &[String]) {
    use sclabel::io::h5ad::read_h5ad_source_genes;
    use sclabel::scnym::api::kept_model_input;
    let full = read_h5ad(bytes, name).unwrap();
    let source = ReadSeekSource::new(Cursor::new(bytes.to_vec())).unwrap();
    let sub = read_h5ad_source_genes(source, name, genes).unwrap();
    let cols: Vec<usize> = (0..full.n_vars()).filter(|&j| genes.contains(&full.var_names[j])).collect();
    assert_eq!(sub.x, full.x.select_cols(&cols), "{name}");
    assert_eq!(sub.obs_names, full.obs_names);
    assert_eq!(sub.obs, full.obs);
    // .raw keeps the same genes, with its own whole-row statistics.
    match (&full.raw, &sub.raw) {
        (Some(raw), Some(sub_raw)) => {
            let rcols: Vec<usize> = (0..raw.var_names.len()).filter(|&j| genes.contains(&raw.var_names[j])).collect();
            // The same matrix (a file may store a row's genes in any order; the block reader sorts them).
            assert_eq!(sub_raw.x.with_sorted_rows(), raw.x.select_cols(&rcols).with_sorted_rows(), "{name}: .raw");
            let (a, ra) =
                sclabel::data::normalize::to_log_normalized_with(&sub_raw.x, &sub_raw.var_names, &sub.value_stats(true).unwrap(), TargetScale::Cpm).unwrap();
            let (b, rb) = to_log_normalized(&raw.x, &raw.var_names, TargetScale::Cpm).unwrap();
            assert_eq!(ra, rb, "{name}: .raw's scale");
            let (a, b) = (a.with_sorted_rows(), b.select_cols(&rcols).with_sorted_rows());
            let worst = a.data.iter().zip(&b.data).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5 && a.indices == b.indices, "{name}: .raw {worst}");
        }
        (None, None) => {}
        (f, s) => panic!("{name}: .raw in the file {}, in the selection {}", f.is_some(), s.is_some()),
    }
    if to_log_normalized(&full.x, &full.var_names, TargetScale::Cpm).is_err() {
        return; // a scaled X (pbmc68k): nothing to normalise
    }
    for target in [TargetScale::Cpm, TargetScale::Cp10k] {
        let (a, ra) = sclabel::data::normalize::to_log_normalized_with(&sub.x, &sub.var_names, &sub.value_stats(false).unwrap(), target).unwrap();
        let (b, rb) = to_log_normalized(&full.x, &full.var_names, target).unwrap();
        assert_eq!(ra, rb);
        let b = b.select_cols(&cols);
        let worst = a.data.iter().zip(&b.data).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5 && a.indices == b.indices, "{name}: {worst}");
    }
    let model_genes: Vec<String> = genes.iter().rev().cloned().collect();
    let (a, _, oa) = kept_model_input(&sub.x, &sub.gene_ids(), &sub.value_stats(false).unwrap(), &model_genes, true, "data").unwrap();
    let (b, _, ob) = kept_model_input(&full.x, &full.gene_ids(), &full.value_stats(false).unwrap(), &model_genes, true, "data").unwrap();
    assert_eq!(oa.shared, ob.shared);
    assert_eq!((a.indptr.clone(), a.indices.clone()), (b.indptr.clone(), b.indices.clone()));
    let worst = a.data.iter().zip(&b.data).map(|(u, v)| (u - v).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "{name}: {worst}");
    // Subsets of cells keep their whole-row statistics.
    let rows = [2usize, 0];
    let (a, _) = sclabel::data::normalize::to_log_normalized_with(
        &sub.select_obs(&rows).unwrap().x,
        &sub.var_names,
        &sub.select_obs(&rows).unwrap().value_stats(false).unwrap(),
        TargetScale::Cpm,
    )
    .unwrap();
    let (b, _) = to_log_normalized(&full.select_obs(&rows).unwrap().x, &full.var_names, TargetScale::Cpm).unwrap();
    assert!(a.data.iter().zip(&b.select_cols(&cols).data).all(|(u, v)| (u - v).abs() < 1e-5));
}

#[test]
fn loading_with_a_gene_selection_gives_the_full_files_results() {
    let bytes = csc_file(COUNTS);
    check_gene_selection(&bytes, "csc.h5ad", &["var5".to_string(), "var0".to_string(), "var3".to_string()]);
    // None of the genes: a clear error.
    let source = ReadSeekSource::new(Cursor::new(bytes)).unwrap();
    let e = sclabel::io::h5ad::read_h5ad_source_genes(source, "csc.h5ad", &["TP53".to_string()]).unwrap_err().to_string();
    assert!(e.contains("none of the 1 genes asked for"), "{e}");
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
fn loading_pbmc3k_with_a_gene_selection_gives_the_full_files_results() {
    let b = shared("pbmc3k_raw_labeled.h5ad");
    let genes: Vec<String> = read_h5ad(&b, "pbmc3k").unwrap().var_names.iter().step_by(7).cloned().collect();
    check_gene_selection(&b, "pbmc3k", &genes);
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared/data beside the project")]
fn loading_pbmc68k_with_a_gene_selection_keeps_its_raw() {
    // X: 765 scaled genes; .raw: ln-normalised over more genes (the anndata ≤ 0.6 layout).
    let b = shared("pbmc68k_reduced.h5ad");
    let full = read_h5ad(&b, "pbmc68k").unwrap();
    let raw = full.raw.as_ref().expect("pbmc68k_reduced has .raw");
    let mut genes: Vec<String> = full.var_names.iter().step_by(2).cloned().collect();
    genes.extend(raw.var_names.iter().step_by(50).filter(|g| !full.var_names.contains(g)).cloned());
    check_gene_selection(&b, "pbmc68k", &genes);
}

/// A CSR file whose rows list a column twice (scipy's `sum_duplicates` never ran): the whole
/// reader, blocks of cells and a gene-selecting read all see each repeated column once, summed,
/// as scipy and anndata do.
#[test]
fn repeated_columns_of_a_csr_file_are_summed_by_every_reader() {
    let s = |v: &str| AttrValue::VarLenString(v.into());
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csr_matrix"));
    x.set_attr("shape", AttrValue::I64Array(vec![3, 4]));
    // Row 0: column 2 twice (1 + 2.5) and out of order; row 1: column 3 three times; row 2 plain.
    x.create_dataset("indptr").with_i32_data(&[0, 4, 7, 8]);
    x.create_dataset("indices").with_i32_data(&[2, 0, 2, 3, 3, 1, 3, 0]);
    x.create_dataset("data").with_f32_data(&[1.0, 5.0, 2.5, 4.0, 1.0, 8.0, 2.0, 9.0]);
    fb.add_group(x.finish());
    for (name, n) in [("obs", 3), ("var", 4)] {
        let mut g = fb.create_group(name);
        g.set_attr("_index", s("_index"));
        g.set_attr("encoding-type", s("dataframe"));
        g.set_attr("column-order", AttrValue::F64Array(vec![]));
        let names: Vec<String> = (0..n).map(|i| format!("{name}{i}")).collect();
        g.create_dataset("_index").with_vlen_strings(&names.iter().map(String::as_str).collect::<Vec<_>>());
        fb.add_group(g.finish());
    }
    let bytes = fb.finish().unwrap();
    let want = CsrMatrix::from_dense(3, 4, &[5.0, 0.0, 3.5, 4.0, 0.0, 8.0, 0.0, 3.0, 9.0, 0.0, 0.0, 0.0]).unwrap();
    assert_eq!(read_h5ad(&bytes, "dup.h5ad").unwrap().x, want);
    let rows = rows_of(&bytes, "dup.h5ad", false);
    for block in [1, 2, 3] {
        let parts: Vec<CsrMatrix> = (0..3).step_by(block).map(|s| rows.read_rows(s..(s + block).min(3), &ColumnMap::all(4)).unwrap()).collect();
        assert_eq!(CsrMatrix::vstack(&parts.iter().collect::<Vec<_>>()).unwrap(), want, "blocks of {block}");
    }
    let (keep, cols) = some_genes(4);
    assert_eq!(rows.read_rows(0..3, &keep).unwrap(), want.select_cols(&cols));
}
