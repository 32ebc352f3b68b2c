//! The `.h5ad` reader against the real data sets in `../shared/data` (beside the project, not in
//! it: without them those tests are ignored, with them a missing file fails), plus malformed-input
//! tests that need no data.
use std::collections::BTreeMap;

use sclabel::data::anndata::{AnnData, Column};
use sclabel::error::SclabelError;
use sclabel::io::h5ad::{read_h5ad, read_h5ad_source, ReadSeekSource};

macro_rules! data_path {
    ($file:literal) => {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/", $file)
    };
}

fn bytes_of(path: &str, file: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("../shared/data/{file}: {e}"))
}

fn load(path: &str, file: &str) -> AnnData {
    let ad = read_h5ad(&bytes_of(path, file), file).unwrap_or_else(|e| panic!("{file}: {e}"));
    ad.validate().unwrap();
    ad
}

fn counts(ad: &AnnData, column: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in ad.obs.get(column).unwrap().to_strings() {
        *out.entry(v.unwrap_or_else(|| "<missing>".into())).or_insert(0) += 1;
    }
    out
}

fn expect(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn x_sum(ad: &AnnData) -> f64 {
    ad.x.data.iter().map(|&v| v as f64).sum()
}

fn assert_close(got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "got {got}, want {want}");
}

fn is_categorical(ad: &AnnData, column: &str) -> bool {
    matches!(ad.obs.get(column).unwrap(), Column::Categorical { .. })
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn pbmc3k_csr_with_cell_types() {
    let file = "pbmc3k_raw_labeled.h5ad";
    let ad = load(data_path!("pbmc3k_raw_labeled.h5ad"), file);
    assert_eq!((ad.n_obs(), ad.n_vars()), (2700, 32738));
    assert_eq!(ad.x.nnz(), 2_286_884);
    assert_close(x_sum(&ad), 6_390_631.0);
    assert_eq!(ad.obs_names[0], "AAACATACAACCAC-1");
    assert_eq!(ad.var_names[0], "MIR1302-10");
    assert!(ad.raw.is_none());
    assert!(is_categorical(&ad, "cell_type"));
    assert_eq!(
        counts(&ad, "cell_type"),
        expect(&[
            ("Naive CD4 T", 697),
            ("Memory CD4 T", 483),
            ("CD14+ Mono", 480),
            ("B", 344),
            ("CD8 T", 271),
            ("FCGR3A+ Mono", 162),
            ("NK", 155),
            ("DC", 32),
            ("Platelet", 14),
            ("unlabeled_QCfail", 62),
        ])
    );
    assert_eq!(ad.obs.names(), vec!["barcode", "cell_type", "seurat_cluster"]);
    assert!(matches!(ad.obs.get("barcode").unwrap(), Column::Strings(_)));
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn symphony_three_label_columns() {
    let file = "pbmc_symphony_3chemistries.h5ad";
    let ad = load(data_path!("pbmc_symphony_3chemistries.h5ad"), file);
    assert_eq!((ad.n_obs(), ad.n_vars()), (1200, 1767));
    assert_eq!(ad.x.nnz(), 245_676);
    assert_close(x_sum(&ad), 506_797.424_356_281_76);
    assert_eq!(ad.obs_names[0], "fivePrime_GATCGCGAGACCGGAT");
    assert_eq!(ad.var_names[0], "LYZ");
    assert_eq!(
        counts(&ad, "cell_type"),
        expect(&[("T_CD4", 373), ("Mono_CD14", 272), ("T_CD8", 226), ("B", 172), ("Mono_CD16", 60), ("NK", 59), ("DC", 28), ("MK", 7), ("HSC", 3),])
    );
    assert_eq!(counts(&ad, "cell_type_broad"), expect(&[("T", 599), ("Mono", 332), ("B", 172), ("NK", 59), ("DC", 28), ("MK", 7), ("HSC", 3)]));
    assert_eq!(counts(&ad, "donor"), expect(&[("3pv2", 480), ("5p", 430), ("3pv1", 290)]));
    // Numeric columns come through too (int64 and float64).
    let Column::Numeric(n_umi) = ad.obs.get("nUMI").unwrap() else { panic!("nUMI is not numeric") };
    assert_eq!(&n_umi[..3], &[6580.0, 4426.0, 4750.0]);
    assert!(matches!(ad.obs.get("percent_mito").unwrap(), Column::Numeric(_)));
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn pbmc8k_dense_with_string_labels() {
    let file = "pbmc8k_200hvg.h5ad";
    let ad = load(data_path!("pbmc8k_200hvg.h5ad"), file);
    assert_eq!((ad.n_obs(), ad.n_vars()), (7480, 200));
    assert_eq!(ad.x.nnz(), 272_309);
    assert_close(x_sum(&ad), 1_955_352.0);
    assert_eq!(ad.obs_names[0], "1");
    assert_eq!(ad.var_names[0], "IGLC3");
    // Stored as a plain string array (not categorical); 'NA' is a label string, not a missing value.
    assert_eq!(
        counts(&ad, "cell_type"),
        expect(&[
            ("CD8+ T-cells", 2740),
            ("Monocytes", 1583),
            ("CD4+ T-cells", 1541),
            ("B-cells", 1167),
            ("NK cells", 408),
            ("NA", 32),
            ("HSC", 8),
            ("Erythrocytes", 1),
        ])
    );
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn pbmc68k_old_compound_layout_with_raw() {
    let file = "pbmc68k_reduced.h5ad";
    let ad = load(data_path!("pbmc68k_reduced.h5ad"), file);
    assert_eq!((ad.n_obs(), ad.n_vars()), (700, 765));
    assert_eq!(ad.x.nnz(), 535_433);
    assert_close(x_sum(&ad), -243.681_057_988_666);
    assert!(ad.x.data.iter().any(|&v| v < 0.0), "X is scaled and has negatives");
    let (idx, val) = ad.x.row(0);
    assert_eq!(&idx[..5], &[0, 1, 2, 3, 4]);
    assert!((val[0] - -0.326).abs() < 1e-3 && (val[4] - 3.386).abs() < 1e-3);
    assert_eq!(ad.obs_names[..2], ["AAAGCCTGGCTAAC-1", "AAATTCGATGCACA-1"]);
    assert_eq!(ad.var_names[..2], ["HES4", "TNFRSF4"]);
    assert_eq!(
        counts(&ad, "bulk_labels"),
        expect(&[
            ("CD14+ Monocyte", 129),
            ("Dendritic", 240),
            ("CD56+ NK", 31),
            ("CD4+/CD25 T Reg", 68),
            ("CD19+ B", 95),
            ("CD8+ Cytotoxic T", 54),
            ("CD4+/CD45RO+ Memory", 19),
            ("CD8+/CD45RA+ Naive Cytotoxic", 43),
            ("CD4+/CD45RA+/CD25- Naive T", 8),
            ("CD34+", 13),
        ])
    );
    let Column::Categorical { categories, .. } = ad.obs.get("bulk_labels").unwrap() else { panic!("bulk_labels") };
    assert_eq!(categories.len(), 10);
    assert_eq!(
        counts(&ad, "louvain"),
        expect(&[("0", 130), ("1", 123), ("2", 117), ("3", 70), ("4", 66), ("5", 54), ("6", 42), ("7", 35), ("8", 31), ("9", 19), ("10", 13),])
    );
    assert_eq!(counts(&ad, "phase"), expect(&[("G1", 501), ("S", 182), ("G2M", 17)]));
    let Column::Numeric(n_genes) = ad.obs.get("n_genes").unwrap() else { panic!("n_genes") };
    assert_eq!(&n_genes[..2], &[1003.0, 1080.0]);
    let raw = ad.raw.as_ref().expect("pbmc68k_reduced has .raw");
    assert_eq!((raw.x.n_rows, raw.x.n_cols), (700, 765));
    assert_eq!(raw.x.nnz(), 174_400);
    assert_close(raw.x.data.iter().map(|&v| v as f64).sum(), 319_044.238_241_076_47);
    assert_eq!(raw.var_names[..2], ["HES4", "TNFRSF4"]);
    assert!(raw.x.data.iter().all(|&v| v >= 0.0));
    let as_raw = ad.use_raw().unwrap();
    assert_eq!(as_raw.n_vars(), 765);
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn pancreas_xin_and_wang() {
    let file = "pancreas_xin.h5ad";
    {
        let ad = load(data_path!("pancreas_xin.h5ad"), file);
        assert_eq!((ad.n_obs(), ad.n_vars()), (674, 980));
        assert_eq!(ad.x.nnz(), 243_023);
        assert_close(x_sum(&ad), 1_180_407.048_494_309_2);
        assert_eq!(ad.obs_names[0], "xin_SRR3541305");
        assert_eq!(ad.var_names[0], "CIZ1");
        assert_eq!(counts(&ad, "cell_type"), expect(&[("alpha", 285), ("beta", 261), ("gamma", 79), ("delta", 49)]));
        assert_eq!(counts(&ad, "study"), expect(&[("xin", 674)]));
    }
    let file = "pancreas_wang.h5ad";
    {
        let ad = load(data_path!("pancreas_wang.h5ad"), file);
        assert_eq!((ad.n_obs(), ad.n_vars()), (501, 219));
        assert_eq!(ad.x.nnz(), 48_628);
        assert_close(x_sum(&ad), 277_804.464_150_637_4);
        assert_eq!(ad.obs_names[0], "wang_SRR3649793");
        assert_eq!(ad.var_names[0], "TGFBR3");
        assert_eq!(
            counts(&ad, "cell_type"),
            expect(&[("alpha", 206), ("beta", 118), ("ductal", 96), ("stellate", 45), ("gamma", 21), ("delta", 10), ("acinar", 5),])
        );
        assert_eq!(counts(&ad, "study"), expect(&[("wang", 501)]));
    }
}

// ------------------------------------------------------------ malformed input (no data needed)

fn assert_invalid_file(bytes: &[u8], what: &str) {
    match read_h5ad(bytes, "broken.h5ad") {
        Err(e @ SclabelError::InvalidFile { .. }) => {
            assert_eq!(e.code(), "invalid_file");
            assert!(e.to_string().contains("broken.h5ad"), "{e}");
        }
        Err(e) => panic!("{what}: expected InvalidFile, got {e:?}"),
        Ok(_) => panic!("{what}: read succeeded"),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn empty_bytes_are_invalid() {
    assert_invalid_file(&[], "empty input");
}

#[test]
fn random_bytes_are_invalid() {
    for (n, seed) in [(1usize, 1u64), (7, 2), (512, 3), (4096, 4), (100_000, 5)] {
        assert_invalid_file(&noise(n, seed), "random bytes");
    }
}

#[test]
fn signature_followed_by_noise_is_invalid() {
    let mut b = b"\x89HDF\r\n\x1a\n".to_vec();
    b.extend(noise(4000, 9));
    assert!(read_h5ad(&b, "broken.h5ad").is_err());
}

#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn truncated_file_is_invalid() {
    let file = "pancreas_wang.h5ad";
    let bytes = bytes_of(data_path!("pancreas_wang.h5ad"), file);
    assert_invalid_file(&bytes[..1000], "first 1000 bytes");
    assert_invalid_file(&bytes[..bytes.len() / 2], "first half");
    assert_invalid_file(&bytes[..bytes.len() - 1], "all but the last byte");
}

/// Corrupted copies of a real file must come back as `Ok` or `Err`, never as a panic.
#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn corrupted_files_do_not_panic() {
    let file = "pancreas_wang.h5ad";
    let bytes = bytes_of(data_path!("pancreas_wang.h5ad"), file);
    let r = noise(4096, 77);
    let mut k = 0;
    let mut next = || {
        k += 1;
        let a = r[k % r.len()] as usize;
        let b = r[(k * 7 + 3) % r.len()] as usize;
        let c = r[(k * 13 + 5) % r.len()] as usize;
        (a << 16) | (b << 8) | c
    };
    for round in 0..300 {
        let mut m = bytes.clone();
        // Metadata lives mostly near the start and the end of h5py files: hit both, and anywhere.
        let pos = match round % 3 {
            0 => next() % 4096.min(m.len()),
            1 => m.len() - 1 - next() % 8192.min(m.len()),
            _ => next() % m.len(),
        };
        for j in 0..(1 + round % 4) {
            let p = (pos + j * 3) % m.len();
            m[p] ^= (next() as u8) | 1;
        }
        let _ = read_h5ad(&m, "fuzzed.h5ad");
    }
}

/// Reading on demand through a `Source` (as the CLI and the browser's `Blob` reader do) gives
/// exactly what reading the whole file's bytes gives.
#[test]
#[cfg_attr(not(shared_data), ignore = "needs ../shared beside the project")]
fn every_file_reads_the_same_through_a_source() {
    for file in
        ["pbmc3k_raw_labeled.h5ad", "pbmc_symphony_3chemistries.h5ad", "pbmc8k_200hvg.h5ad", "pbmc68k_reduced.h5ad", "pancreas_xin.h5ad", "pancreas_wang.h5ad"]
    {
        let path = format!("{}/../shared/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let whole = load(&path, file);
        let source = ReadSeekSource::new(std::fs::File::open(&path).unwrap()).unwrap();
        let streamed = read_h5ad_source(source, file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(streamed == whole, "{file}: streamed read differs");
    }
}
