//! The block reader (`open_h5ad_rows`): blocks of cells with only some genes kept give exactly the
//! rows and columns of the whole-file reader, its value statistics equal those of the whole
//! matrix, and normalising kept genes with those totals equals normalising everything first.
//! On the shared data sets (CSR, dense, `.raw`; skipped with a note when absent) and on a CSC file
//! built in memory (always).
use std::io::Cursor;

use hdf5_pure::{AttrValue, FileBuilder};
use sclabel::data::anndata::AnnData;
use sclabel::data::h5ad::{open_h5ad_rows, read_h5ad, ColumnMap, H5adRows, ReadSeekSource};
use sclabel::data::matrix::CsrMatrix;
use sclabel::data::normalize::{detect, detect_from_stats, log_factor, rescale_in_place, to_log_normalized, TargetScale, ValueStats};

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
            assert!(worst < 1e-5, "{name}: kept-gene normalisation differs by {worst}");
        }
    }
}

fn shared(file: &str) -> Option<Vec<u8>> {
    let path = format!("{}/../shared/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).map_err(|_| eprintln!("skipped: ../shared/data/{file} not found")).ok()
}

#[test]
fn blocks_of_shared_files_equal_the_whole_file_reader() {
    if let Some(b) = shared("pbmc3k_raw_labeled.h5ad") {
        check(&b, "pbmc3k (CSR counts)", false, 1000);
    }
    if let Some(b) = shared("pbmc8k_200hvg.h5ad") {
        check(&b, "pbmc8k (dense counts)", false, 777);
    }
    if let Some(b) = shared("pbmc68k_reduced.h5ad") {
        check(&b, "pbmc68k .raw (old layout, log data)", true, 64);
    }
    if let Some(b) = shared("pancreas_xin.h5ad") {
        check(&b, "xin (CSR log2)", false, 100);
    }
}

/// CSC X, float64 values, int64 indices, 5 cells × 7 genes, plus a non-finite value file.
fn csc_file(values: [[f64; 7]; 5]) -> Vec<u8> {
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
        g.set_attr("column-order", AttrValue::F64Array(vec![]));
        let names: Vec<String> = (0..n).map(|i| format!("{name}{i}")).collect();
        g.create_dataset("_index").with_vlen_strings(&names.iter().map(String::as_str).collect::<Vec<_>>());
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
