//! The `.h5ad` reader on small files built in memory with hdf5-pure's writer: layouts the shared
//! data sets don't cover (CSC, 64-bit indices, `raw` group, nullable columns, …) and the errors for
//! layouts it refuses. Needs no data files.
use hdf5_pure::{AttrValue, CharacterSet, CompoundTypeBuilder, Datatype, EnumTypeBuilder, FileBuilder, GroupBuilder, StringPadding};
use sclabel::data::anndata::{AnnData, Column};
use sclabel::error::SclabelError;
use sclabel::io::h5ad::read_h5ad;

/// The test matrix, 3 cells × 4 genes.
const M: [[f32; 4]; 3] = [[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 4.0], [5.0, 0.0, 0.0, 0.0]];

fn s(v: &str) -> AttrValue {
    AttrValue::VarLenString(v.into())
}

fn dense(ad: &AnnData) -> Vec<f32> {
    let mut out = Vec::new();
    ad.x.densify_rows_into(&(0..ad.n_obs()).collect::<Vec<_>>(), &mut out);
    out
}

fn m_flat() -> Vec<f32> {
    M.iter().flatten().copied().collect()
}

fn bool_type() -> Datatype {
    EnumTypeBuilder::u8_based().u8_value("FALSE", 0).u8_value("TRUE", 1).build().unwrap()
}

fn index_frame(g: &mut GroupBuilder, names: &[&str]) {
    g.set_attr("_index", s("_index"));
    g.set_attr("encoding-type", s("dataframe"));
    g.set_attr("column-order", AttrValue::F64Array(vec![]));
    g.create_dataset("_index").with_vlen_strings(names);
}

fn csr_group(g: &mut GroupBuilder, shape: [i64; 2], indptr: &[i32], indices: &[i32], data: &[f32]) {
    g.set_attr("encoding-type", s("csr_matrix"));
    g.set_attr("shape", AttrValue::I64Array(shape.to_vec()));
    g.create_dataset("indptr").with_i32_data(indptr);
    g.create_dataset("indices").with_i32_data(indices);
    g.create_dataset("data").with_f32_data(data);
}

/// Current anndata layout: CSC float64 X with int64 index arrays, every obs column kind, `raw` group.
fn current_layout() -> Vec<u8> {
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));

    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csc_matrix"));
    x.set_attr("shape", AttrValue::I64Array(vec![3, 4]));
    x.create_dataset("indptr").with_i64_data(&[0, 2, 2, 4, 5]);
    x.create_dataset("indices").with_i64_data(&[0, 2, 0, 1, 1]);
    x.create_dataset("data").with_f64_data(&[1.0, 5.0, 2.0, 3.0, 4.0]);
    fb.add_group(x.finish());

    let mut obs = fb.create_group("obs");
    obs.set_attr("_index", s("cell_id"));
    obs.set_attr("encoding-type", s("dataframe"));
    obs.set_attr("column-order", AttrValue::VarLenStringArray(["cell_type", "flag", "n", "note", "nint", "nbool", "cluster"].map(String::from).to_vec()));
    obs.create_dataset("cell_id").with_vlen_strings(&["c0", "c1", "c2"]);
    let mut ct = obs.create_group("cell_type");
    ct.set_attr("encoding-type", s("categorical"));
    ct.create_dataset("categories").with_vlen_strings(&["T", "B"]);
    ct.create_dataset("codes").with_i8_data(&[1, -1, 0]);
    obs.add_group(ct.finish());
    obs.create_dataset("flag").with_enum_u8_data(bool_type(), &[1, 0, 1]);
    obs.create_dataset("n").with_i64_data(&[5, 6, 7]);
    obs.create_dataset("note").with_strings(&["x", "yy", "zzz"]).unwrap();
    let mut nint = obs.create_group("nint");
    nint.set_attr("encoding-type", s("nullable-integer"));
    nint.create_dataset("values").with_i64_data(&[1, 2, 3]);
    nint.create_dataset("mask").with_enum_u8_data(bool_type(), &[0, 1, 0]);
    obs.add_group(nint.finish());
    let mut nbool = obs.create_group("nbool");
    nbool.set_attr("encoding-type", s("nullable-boolean"));
    nbool.create_dataset("values").with_enum_u8_data(bool_type(), &[1, 0, 0]);
    nbool.create_dataset("mask").with_enum_u8_data(bool_type(), &[0, 0, 1]);
    obs.add_group(nbool.finish());
    // Integer categories, as pandas writes for a categorical of numbers.
    let mut cl = obs.create_group("cluster");
    cl.set_attr("encoding-type", s("categorical"));
    cl.create_dataset("categories").with_i64_data(&[10, 20]);
    cl.create_dataset("codes").with_i8_data(&[0, 1, 1]);
    obs.add_group(cl.finish());
    fb.add_group(obs.finish());

    let mut var = fb.create_group("var");
    index_frame(&mut var, &["g0", "g1", "g2", "g3"]);
    fb.add_group(var.finish());

    let mut raw = fb.create_group("raw");
    let mut rx = raw.create_group("X");
    csr_group(&mut rx, [3, 5], &[0, 1, 2, 3], &[4, 0, 2], &[0.5, 1.5, 2.5]);
    raw.add_group(rx.finish());
    let mut rv = raw.create_group("var");
    index_frame(&mut rv, &["r0", "r1", "r2", "r3", "r4"]);
    raw.add_group(rv.finish());
    fb.add_group(raw.finish());
    fb.finish().unwrap()
}

#[test]
fn current_layout_csc_all_column_kinds_and_raw_group() {
    let ad = read_h5ad(&current_layout(), "current.h5ad").unwrap();
    ad.validate().unwrap();
    assert_eq!((ad.n_obs(), ad.n_vars()), (3, 4));
    assert_eq!(dense(&ad), m_flat());
    assert_eq!(ad.x.indptr, vec![0, 2, 4, 5]);
    assert_eq!(ad.obs_names, ["c0", "c1", "c2"]);
    assert_eq!(ad.var_names, ["g0", "g1", "g2", "g3"]);
    assert_eq!(ad.obs.names(), ["cell_type", "flag", "n", "note", "nint", "nbool", "cluster"]);
    let strings = |c: &str| ad.obs.get(c).unwrap().to_strings();
    let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
    assert_eq!(strings("cell_type"), [Some("B".to_string()), None, Some("T".to_string())]);
    assert_eq!(ad.obs.get("flag").unwrap(), &Column::Bool(vec![true, false, true]));
    assert_eq!(ad.obs.get("n").unwrap(), &Column::Numeric(vec![5.0, 6.0, 7.0]));
    assert_eq!(ad.obs.get("note").unwrap(), &Column::Strings(vec!["x".into(), "yy".into(), "zzz".into()]));
    assert_eq!(strings("nint"), [Some("1".to_string()), None, Some("3".to_string())]);
    assert_eq!(strings("nbool"), [Some("True".to_string()), Some("False".to_string()), None]);
    assert_eq!(strings("cluster"), some(&["10", "20", "20"]));
    let raw = ad.raw.as_ref().unwrap();
    assert_eq!((raw.x.n_rows, raw.x.n_cols), (3, 5));
    assert_eq!(raw.var_names, ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(raw.x.row(0), (&[4u32][..], &[0.5f32][..]));
}

/// anndata ≤ 0.6: dense integer X, compound obs / var, categories in `uns`, root-level `raw.X` / `raw.var`.
fn old_layout() -> Vec<u8> {
    let fixed = |size| Datatype::String { size, padding: StringPadding::NullPad, charset: CharacterSet::Ascii };
    let mut fb = FileBuilder::new();
    let x: Vec<i32> = m_flat().iter().map(|&v| v as i32).collect();
    fb.create_dataset("X").with_i32_data(&x).with_shape(&[3, 4]);

    // obs: (index S4, lab int8, score float32 big-endian-free, flag bool)
    let obs_type =
        CompoundTypeBuilder::with_size(10).field("index", 0, fixed(4)).i8_field("lab", 4).f32_field("score", 5).field("flag", 9, bool_type()).build().unwrap();
    let mut rec = Vec::new();
    for (i, (name, lab, score, flag)) in [("AA", 1i8, 0.5f32, 1u8), ("BBBB", 0, 1.5, 0), ("C", -1, 2.5, 1)].iter().enumerate() {
        let mut b = [0u8; 4];
        b[..name.len()].copy_from_slice(name.as_bytes());
        rec.extend_from_slice(&b);
        rec.push(*lab as u8);
        rec.extend_from_slice(&score.to_le_bytes());
        rec.push(*flag);
        assert_eq!(rec.len(), (i + 1) * 10);
    }
    fb.create_dataset("obs").with_compound_data(obs_type, rec, 3);

    let var_type = CompoundTypeBuilder::with_size(2).field("index", 0, fixed(2)).build().unwrap();
    fb.create_dataset("var").with_compound_data(var_type.clone(), b"g0g1g2g3".to_vec(), 4);
    fb.create_dataset("raw.var").with_compound_data(var_type, b"g0g1g2g3".to_vec(), 4);

    let mut uns = fb.create_group("uns");
    uns.create_dataset("lab_categories").with_strings(&["neuron", "glia"]).unwrap();
    fb.add_group(uns.finish());

    let mut raw = fb.create_group("raw.X");
    raw.set_attr("h5sparse_format", AttrValue::AsciiString("csr".into()));
    raw.set_attr("h5sparse_shape", AttrValue::I64Array(vec![3, 4]));
    raw.create_dataset("indptr").with_i32_data(&[0, 2, 4, 5]);
    raw.create_dataset("indices").with_i32_data(&[0, 2, 2, 3, 0]);
    raw.create_dataset("data").with_f32_data(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    fb.add_group(raw.finish());
    fb.finish().unwrap()
}

#[test]
fn old_compound_layout() {
    let ad = read_h5ad(&old_layout(), "old.h5ad").unwrap();
    ad.validate().unwrap();
    assert_eq!(dense(&ad), m_flat());
    assert_eq!(ad.obs_names, ["AA", "BBBB", "C"]);
    assert_eq!(ad.var_names, ["g0", "g1", "g2", "g3"]);
    assert_eq!(ad.obs.names(), ["lab", "score", "flag"]);
    assert_eq!(ad.obs.get("lab").unwrap(), &Column::Categorical { codes: vec![1, 0, -1], categories: vec!["neuron".into(), "glia".into()] });
    assert_eq!(ad.obs.get("score").unwrap(), &Column::Numeric(vec![0.5, 1.5, 2.5]));
    assert_eq!(ad.obs.get("flag").unwrap(), &Column::Bool(vec![true, false, true]));
    let raw = ad.raw.as_ref().unwrap();
    assert_eq!(raw.x, ad.x);
    assert_eq!(raw.var_names, ad.var_names);
}

// ------------------------------------------------------------------------ refusals

fn layout_error(bytes: &[u8]) -> (String, String) {
    match read_h5ad(bytes, "t.h5ad") {
        Err(SclabelError::UnsupportedLayout { element, reason, .. }) => (element, reason),
        Err(e) => panic!("expected UnsupportedLayout, got {e:?}"),
        Ok(_) => panic!("expected UnsupportedLayout, the read succeeded"),
    }
}

/// A minimal valid file whose X group is built by `x`.
fn with_x(x: impl FnOnce(&mut GroupBuilder)) -> Vec<u8> {
    let mut fb = FileBuilder::new();
    let mut g = fb.create_group("X");
    x(&mut g);
    fb.add_group(g.finish());
    let mut obs = fb.create_group("obs");
    index_frame(&mut obs, &["c0", "c1", "c2"]);
    fb.add_group(obs.finish());
    let mut var = fb.create_group("var");
    index_frame(&mut var, &["g0", "g1", "g2", "g3"]);
    fb.add_group(var.finish());
    fb.finish().unwrap()
}

#[test]
fn plain_csr_reads() {
    let bytes = with_x(|g| csr_group(g, [3, 4], &[0, 2, 4, 5], &[0, 2, 2, 3, 0], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    let ad = read_h5ad(&bytes, "t.h5ad").unwrap();
    assert_eq!(dense(&ad), m_flat());
    assert!(ad.obs.columns.is_empty());
    assert!(ad.raw.is_none());
}

#[test]
fn missing_x_names_x() {
    let mut fb = FileBuilder::new();
    fb.create_dataset("something").with_f32_data(&[1.0]);
    let (element, reason) = layout_error(&fb.finish().unwrap());
    assert_eq!(element, "X");
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn unknown_sparse_encoding_names_x() {
    let bytes = with_x(|g| {
        g.set_attr("encoding-type", s("coo_matrix"));
        g.create_dataset("data").with_f32_data(&[1.0]);
    });
    let (element, reason) = layout_error(&bytes);
    assert_eq!(element, "X");
    assert!(reason.contains("coo_matrix"), "{reason}");
}

#[test]
fn shape_that_disagrees_with_names_is_refused() {
    let bytes = with_x(|g| csr_group(g, [3, 5], &[0, 2, 4, 5], &[0, 2, 2, 3, 0], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    let (element, reason) = layout_error(&bytes);
    assert_eq!(element, "X");
    assert!(reason.contains("3 × 5"), "{reason}");
}

#[test]
fn out_of_range_index_is_refused() {
    let bytes = with_x(|g| csr_group(g, [3, 4], &[0, 2, 4, 5], &[0, 9, 2, 3, 0], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(layout_error(&bytes).0, "X");
    let bytes = with_x(|g| csr_group(g, [3, 4], &[0, 2, 4, 5], &[0, -1, 2, 3, 0], &[1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(layout_error(&bytes).0, "X/indices");
}

#[test]
fn bad_category_code_names_the_column() {
    let mut fb = FileBuilder::new();
    let mut x = fb.create_group("X");
    csr_group(&mut x, [3, 4], &[0, 2, 4, 5], &[0, 2, 2, 3, 0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    fb.add_group(x.finish());
    let mut obs = fb.create_group("obs");
    index_frame(&mut obs, &["c0", "c1", "c2"]);
    obs.set_attr("column-order", AttrValue::VarLenStringArray(vec!["cell_type".into()]));
    let mut ct = obs.create_group("cell_type");
    ct.set_attr("encoding-type", s("categorical"));
    ct.create_dataset("categories").with_vlen_strings(&["T", "B"]);
    ct.create_dataset("codes").with_i8_data(&[0, 2, 1]);
    obs.add_group(ct.finish());
    fb.add_group(obs.finish());
    let mut var = fb.create_group("var");
    index_frame(&mut var, &["g0", "g1", "g2", "g3"]);
    fb.add_group(var.finish());
    let (element, reason) = layout_error(&fb.finish().unwrap());
    assert_eq!(element, "obs/cell_type/codes");
    assert!(reason.contains("code 2"), "{reason}");
}

/// Every prefix of a small file is refused (never a panic), and the short ones as InvalidFile.
#[test]
fn every_truncation_is_an_error() {
    let bytes = current_layout();
    for cut in (0..bytes.len()).step_by(7) {
        match read_h5ad(&bytes[..cut], "cut.h5ad") {
            Err(SclabelError::InvalidFile { .. }) => {}
            Err(e) => panic!("cut at {cut}: expected InvalidFile, got {e:?}"),
            Ok(_) => panic!("cut at {cut}: read succeeded"),
        }
    }
}

/// X as a soft link (h5py's SoftLink; anndata follows it): hdf5-pure reads hard links only, so the
/// file is refused by name, saying what to do, instead of "unexpected EOF". Made by
/// scripts/make-fuzz-seeds.py.
#[test]
fn a_soft_link_is_refused_by_name() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/soft_link_x.h5ad")).unwrap();
    let e = read_h5ad(&bytes, "soft.h5ad").unwrap_err();
    assert_eq!(e.code(), "unsupported_layout");
    assert!(e.to_string().contains("soft or external link") && e.to_string().contains("copy the linked object"), "{e}");
}
