//! Files for the streamed-prediction memory test (tests/js/streaming.test.mjs), written to
//! target/tmp: a 50,000-cell query over 30,000 genes with ~600 stored counts per cell (CSR, 240 MB
//! in memory, as the reader holds it) and a labelled 3,000-cell reference over its first 1,000
//! genes. Five cell types, each with its own marker genes among the first 1,000 plus background
//! genes drawn from all 30,000, so a model trained on the reference labels the query.
//! Here, natively: the query predicted and explained a block at a time equals the query loaded whole.
//! The query is in the layout h5py writes (so the JS test can append to it), the reference in
//! hdf5-pure's latest format: the streamed reader reads both.
use hdf5_pure::{AttrValue, FileBuilder, GroupBuilder};
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::io::h5ad::{open_h5ad_rows, read_h5ad_source, ReadSeekSource};
use sclabel::scnym::api::{predict_adata, predict_h5ad_rows, train_transfer, TransferOptions};
use sclabel::scnym::explain::{explain_adata, explain_h5ad_rows, ExplainOptions};
use sclabel::scnym::predict::PredictOptions;
use sclabel::train::progress::Silent;

const N_GENES: usize = 30_000;
const N_TYPES: usize = 5;
const MARKERS: usize = 150;
const BACKGROUND: usize = 450;

fn s(v: &str) -> AttrValue {
    AttrValue::VarLenString(v.into())
}

/// SplitMix64: deterministic draws without a dependency on an RNG's stream.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cell `i` (seeded by `salt`) of type i mod 5 over genes `0..n_genes`: sorted (gene, count).
fn cell(i: usize, salt: u64, n_genes: usize) -> Vec<(i32, f32)> {
    let t = i % N_TYPES;
    let mut row: Vec<(i32, f32)> = Vec::with_capacity(MARKERS + BACKGROUND);
    for k in 0..MARKERS + BACKGROUND {
        let r = mix(salt ^ ((i as u64) << 20) ^ k as u64);
        let gene = if k < MARKERS {
            // The type's 200-gene marker block: 150 of them, with larger counts.
            t * 200 + (r % 200) as usize
        } else {
            (r % N_GENES as u64) as usize
        };
        if gene < n_genes {
            let count = if k < MARKERS { 2 + (r >> 40) % 8 } else { 1 + (r >> 40) % 2 };
            row.push((gene as i32, count as f32));
        }
    }
    row.sort_unstable_by_key(|p| p.0);
    row.dedup_by_key(|p| p.0);
    row
}

fn frame(g: &mut GroupBuilder, names: &[String], columns: &[&str]) {
    g.set_attr("_index", s("_index"));
    g.set_attr("encoding-type", s("dataframe"));
    g.set_attr("encoding-version", s("0.2.0"));
    if columns.is_empty() {
        g.set_attr("column-order", AttrValue::F64Array(vec![]));
    } else {
        g.set_attr("column-order", AttrValue::VarLenStringArray(columns.iter().map(|c| c.to_string()).collect()));
    }
    g.create_dataset("_index").with_vlen_strings(&names.iter().map(String::as_str).collect::<Vec<_>>());
}

/// The CSR matrix of cells `0..n_cells`: indptr, indices, data.
fn counts(n_cells: usize, n_genes: usize, salt: u64) -> (Vec<i64>, Vec<i32>, Vec<f32>) {
    let (mut indptr, mut indices, mut data) = (vec![0i64], Vec::new(), Vec::new());
    for i in 0..n_cells {
        for (g, v) in cell(i, salt, n_genes) {
            indices.push(g);
            data.push(v);
        }
        indptr.push(indices.len() as i64);
    }
    (indptr, indices, data)
}

/// [`write`]'s file in the layout h5py writes (version-0 superblock, symbol-table groups), which
/// the annotated export appends to (tests/js/streaming.test.mjs exports this query).
fn write_h5py_layout(path: &std::path::Path, n_cells: usize, n_genes: usize, salt: u64) {
    use sclabel::io::hdf5_append::{new_file, Element, Entry, Tail, Values};
    let (indptr, indices, data) = counts(n_cells, n_genes, salt);
    let bytes = new_file(|t| {
        let enc = |t: &mut Tail, kind: &str, version: &str| vec![t.string_attribute("encoding-type", kind), t.string_attribute("encoding-version", version)];
        let frame = |t: &mut Tail, names: Vec<String>, columns: &[&str], mut entries: Vec<_>| {
            let attrs = enc(t, "string-array", "0.2.0");
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let index = t.dataset(Element::Str, &[names.len() as u64], Values::Strings(&names), &attrs);
            entries.push(Entry::dataset("_index", index));
            let mut attrs = enc(t, "dataframe", "0.2.0");
            attrs.push(t.string_attribute("_index", "_index"));
            attrs.push(t.strings_attribute("column-order", &columns.iter().map(|c| c.to_string()).collect::<Vec<_>>()));
            t.group(entries, &attrs)
        };
        let mut x_attrs = enc(t, "csr_matrix", "0.1.0");
        x_attrs.push(Tail::i64s_attribute("shape", &[n_cells as i64, n_genes as i64]));
        let x = [
            Entry::dataset("indptr", t.dataset(Element::I64, &[indptr.len() as u64], Values::I64(&indptr), &[])),
            Entry::dataset("indices", t.dataset(Element::I32, &[indices.len() as u64], Values::I32(&indices), &[])),
            Entry::dataset("data", t.dataset(Element::F32, &[data.len() as u64], Values::F32(&data), &[])),
        ];
        let x = t.group(x.to_vec(), &x_attrs);
        let attrs = enc(t, "string-array", "0.2.0");
        let categories = t.dataset(Element::Str, &[N_TYPES as u64], Values::Strings(&["type0", "type1", "type2", "type3", "type4"]), &attrs);
        let attrs = enc(t, "array", "0.2.0");
        let codes: Vec<u8> = (0..n_cells).map(|i| (i % N_TYPES) as u8).collect();
        let codes = t.dataset(Element::I8, &[n_cells as u64], Values::Bytes(&codes), &attrs);
        let mut attrs = enc(t, "categorical", "0.2.0");
        attrs.push(Tail::bool_attribute("ordered", false));
        let cell_type = t.group(vec![Entry::dataset("categories", categories), Entry::dataset("codes", codes)], &attrs);
        let obs = frame(t, (0..n_cells).map(|i| format!("c{salt}_{i}")).collect(), &["cell_type"], vec![Entry::group("cell_type", &cell_type)]);
        let var = frame(t, (0..n_genes).map(|g| format!("gene{g}")).collect(), &[], Vec::new());
        let attrs = enc(t, "anndata", "0.1.0");
        t.group(vec![Entry::group("X", &x), Entry::group("obs", &obs), Entry::group("var", &var)], &attrs)
    });
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// An anndata-layout `.h5ad` of `n_cells` cells over the first `n_genes` genes, `cell_type` in obs,
/// as hdf5-pure's writer lays it out (latest-format superblock and groups).
fn write(path: &std::path::Path, n_cells: usize, n_genes: usize, salt: u64) {
    let (indptr, indices, data) = counts(n_cells, n_genes, salt);
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    fb.set_attr("encoding-version", s("0.1.0"));
    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csr_matrix"));
    x.set_attr("encoding-version", s("0.1.0"));
    x.set_attr("shape", AttrValue::I64Array(vec![n_cells as i64, n_genes as i64]));
    x.create_dataset("indptr").with_i64_data(&indptr);
    x.create_dataset("indices").with_i32_data(&indices);
    x.create_dataset("data").with_f32_data(&data);
    fb.add_group(x.finish());
    let mut obs = fb.create_group("obs");
    frame(&mut obs, &(0..n_cells).map(|i| format!("c{salt}_{i}")).collect::<Vec<_>>(), &["cell_type"]);
    let mut ct = obs.create_group("cell_type");
    ct.set_attr("encoding-type", s("categorical"));
    ct.set_attr("encoding-version", s("0.2.0"));
    ct.create_dataset("categories").with_vlen_strings(&["type0", "type1", "type2", "type3", "type4"]);
    ct.create_dataset("codes").with_i8_data(&(0..n_cells).map(|i| (i % N_TYPES) as i8).collect::<Vec<_>>());
    obs.add_group(ct.finish());
    fb.add_group(obs.finish());
    let mut var = fb.create_group("var");
    frame(&mut var, &(0..n_genes).map(|g| format!("gene{g}")).collect::<Vec<_>>(), &[]);
    fb.add_group(var.finish());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, fb.finish().unwrap()).unwrap();
}

#[test]
fn a_50k_cell_query_predicts_block_by_block() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    let (query, reference) = (dir.join("streaming_query_50k.h5ad"), dir.join("streaming_reference.h5ad"));
    write_h5py_layout(&query, 50_000, N_GENES, 1);
    write(&reference, 3_000, 1_000, 2);

    // A model on the reference's 1,000 genes (a few epochs: the types are well apart).
    let open = |p: &std::path::Path| ReadSeekSource::new(std::io::BufReader::new(std::fs::File::open(p).unwrap())).unwrap();
    let compute = cpu(BackendRequest::Cpu, "test").unwrap();
    let device = compute.device.clone();
    let r = read_h5ad_source(open(&reference), "reference").unwrap();
    let config = serde_json::json!({ "n_epochs": 3, "seed": 0 });
    let options = TransferOptions { preset: "no_new_identity".into(), normalize: true, config: Some(config), ..TransferOptions::default() };
    let (model, _) = block_on(train_transfer(&r, None, &options, &device, &mut Silent)).unwrap();

    // The first 5,000 query cells, streamed and held whole, agree; and the model labels them.
    let q = read_h5ad_source(open(&query), "query").unwrap();
    let head = q.select_obs(&(0..5_000).collect::<Vec<_>>()).unwrap();
    let options = PredictOptions { normalize: true, embedding: false, ..PredictOptions::default() };
    let (held, _) = block_on(predict_adata(&model, &head, &options, &device, &mut Silent)).unwrap();
    let rows = open_h5ad_rows(open(&query), "query", false).unwrap();
    assert!(rows.block_rows() < 50_000, "the query is read in several blocks ({} rows each)", rows.block_rows());
    let (streamed, report) = block_on(predict_h5ad_rows(&model, &rows, &options, &device, &mut Silent)).unwrap();
    assert_eq!(report.overlap.shared, 1_000);
    assert_eq!(streamed.labels[..5_000], held.labels[..]);
    let worst = held.probabilities.iter().zip(&streamed.probabilities).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-6, "{worst}");
    let correct = streamed.labels.iter().enumerate().filter(|(i, l)| **l == format!("type{}", i % N_TYPES)).count();
    assert!(correct as f64 > 0.95 * 50_000.0, "accuracy {}", correct as f64 / 50_000.0);

    // Expected gradients from the file, block by block: with a pool of at most 10,000 reference
    // cells (type1: 10,000) they equal those of the file loaded whole.
    let labels = q.obs.get("cell_type").unwrap().to_strings();
    let what = "obs column 'cell_type'";
    let o = ExplainOptions {
        target: "type0".into(),
        source: Some("type1".into()),
        n_samples: 8,
        n_cells: Some(20),
        normalize: true,
        seed: 3,
        ..ExplainOptions::default()
    };
    let whole = block_on(explain_adata(&q, &model, "cell_type", &o, &compute, &mut Silent)).unwrap();
    let streamed = block_on(explain_h5ad_rows(&rows, &model, &labels, what, &o, &compute, &mut Silent)).unwrap();
    assert_eq!(streamed.cells.len(), 20);
    assert_eq!(streamed.cells, whole.cells);
    assert!(streamed.warnings.is_empty(), "{:?}", streamed.warnings);
    let worst = whole.attributions.iter().zip(&streamed.attributions).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");
    // Against every other cell (40,000): a seeded sample of 10,000, said so; type0's own marker
    // genes (0..200) explain it.
    let all = ExplainOptions { source: None, ..o.clone() };
    let e = block_on(explain_h5ad_rows(&rows, &model, &labels, what, &all, &compute, &mut Silent)).unwrap();
    assert_eq!(e.cells, whole.cells);
    assert!(e.warnings.iter().any(|w| w.contains("10000 of the 40000")), "{:?}", e.warnings);
    assert!(e.ranking[..10].iter().all(|&g| g < 200), "top genes {:?}", &e.ranking[..10]);
    assert!(e.attributions.iter().all(|v| v.is_finite()));
    // Labels that don't fit the file are refused by name.
    let err = block_on(explain_h5ad_rows(&rows, &model, &labels[..10], what, &o, &compute, &mut Silent)).unwrap_err();
    assert!(err.to_string().contains("10 labels for 50000 cells"), "{err}");
}

/// The audit of a file read block by block (only the 2,000 highly variable genes kept) equals the
/// audit of the file loaded whole: same genes, same training dynamics, same categories.
#[test]
fn an_audit_streams_and_equals_the_loaded_file() {
    use sclabel::audit::api::{audit_adata, audit_h5ad_rows, AuditOptions};
    use sclabel::data::hvg::{HvgFlavor, HvgOptions};
    use sclabel::train::classifier::TrainOptions;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/streaming_audit.h5ad");
    write(&path, 5_000, N_GENES, 7);
    let open = || ReadSeekSource::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let device = cpu(BackendRequest::Cpu, "test").unwrap();
    let whole = read_h5ad_source(open(), "audit").unwrap();
    let rows = open_h5ad_rows(open(), "audit", false).unwrap();
    assert!(rows.block_rows() < 5_000, "several blocks ({} rows each)", rows.block_rows());
    for flavor in [HvgFlavor::Seurat, HvgFlavor::SeuratV3] {
        let options = AuditOptions {
            hvg: Some(HvgOptions { flavor, ..HvgOptions::default() }),
            train: TrainOptions { n_epochs: 3, seed: 1, ..TrainOptions::default() },
            ..AuditOptions::default()
        };
        let a = block_on(audit_adata(&whole, &options, &device, &mut Silent)).unwrap();
        let b = block_on(audit_h5ad_rows(&rows, &options, &device, &mut Silent)).unwrap();
        assert_eq!(b.genes.len(), 2_000);
        assert_eq!(a.genes, b.genes, "{flavor:?}");
        assert_eq!(a.gene_selection, b.gene_selection);
        assert_eq!(a.dynamics, b.dynamics, "{flavor:?}: training dynamics");
        assert_eq!(a.categories, b.categories);
        assert_eq!(a.corrected_labels, b.corrected_labels);
        assert_eq!(a.gene_scores, b.gene_scores);
    }
}

/// Training from files read a block of cells at a time (the reference held as compact blocks of
/// rows) gives the model training on the same files loaded gives, byte for byte: genes restricted
/// (options.genes), a label excluded, a subsampled query, SSL and the domain adversary on.
#[test]
fn training_from_files_equals_training_on_them_loaded() {
    use sclabel::scnym::api::train_transfer_h5ad;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    let (reference, query) = (dir.join("streaming_train_reference.h5ad"), dir.join("streaming_train_query.h5ad"));
    write(&reference, 6_000, N_GENES, 11);
    write_h5py_layout(&query, 8_000, N_GENES, 12);
    let open = |p: &std::path::Path| ReadSeekSource::new(std::io::BufReader::new(std::fs::File::open(p).unwrap())).unwrap();
    let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
    let options = TransferOptions {
        normalize: true,
        exclude_labels: vec!["type4".into()],
        max_query_cells: Some(3_000),
        genes: Some((0..1_500).map(|g| format!("gene{}", g * 2)).chain(["not_a_gene".to_string()]).collect()),
        config: Some(serde_json::json!({ "n_epochs": 2, "seed": 5 })),
        ..TransferOptions::default()
    };
    let (r, q) = (read_h5ad_source(open(&reference), "reference").unwrap(), read_h5ad_source(open(&query), "query").unwrap());
    let (loaded, warnings) = block_on(train_transfer(&r, Some(&q), &options, &device, &mut Silent)).unwrap();
    let (r_rows, q_rows) = (open_h5ad_rows(open(&reference), "reference", false).unwrap(), open_h5ad_rows(open(&query), "query", false).unwrap());
    assert!(r_rows.block_rows() < 6_000, "the reference is read in several blocks ({} rows each)", r_rows.block_rows());
    let (streamed, streamed_warnings) = block_on(train_transfer_h5ad(&r_rows, Some(&q_rows), &options, &device, &mut Silent)).unwrap();
    assert_eq!(streamed_warnings, warnings);
    assert!(warnings.iter().any(|w| w.contains("1500 of the 1501 genes")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("subsampled to 3000")), "{warnings:?}");
    assert_eq!(streamed.genes.len(), 1_500);
    assert_eq!(streamed.classes, ["type0", "type1", "type2", "type3"]);
    // The same bundle: metadata (config, metrics, provenance) and every tensor's bytes.
    use safetensors::SafeTensors;
    let (a, b) = (block_on(streamed.to_bytes()).unwrap(), block_on(loaded.to_bytes()).unwrap());
    assert_eq!(SafeTensors::read_metadata(&a).unwrap().1.metadata(), SafeTensors::read_metadata(&b).unwrap().1.metadata());
    let (a, b) = (SafeTensors::deserialize(&a).unwrap(), SafeTensors::deserialize(&b).unwrap());
    let (mut names, mut other) = (a.names(), b.names());
    names.sort();
    other.sort();
    assert_eq!(names, other);
    for name in names {
        assert_eq!(a.tensor(name).unwrap().data(), b.tensor(name).unwrap().data(), "tensor {name}");
    }
    // Genes the data don't have are refused by name.
    let none = TransferOptions { genes: Some(vec!["not_a_gene".into()]), ..options };
    let err = block_on(train_transfer_h5ad(&r_rows, Some(&q_rows), &none, &device, &mut Silent)).unwrap_err();
    assert!(err.to_string().contains("none of the 1 genes in options.genes (e.g. 'not_a_gene') is among the 30000 genes"), "{err}");
}
