//! A 200,000-cell synthetic `.h5ad` (anndata's CSR layout), written for the JS memory test
//! (tests/js/memory.test.mjs: loading it must peak within ~1.5× the CSR size) and read back here
//! on demand through a `Source`.
use hdf5_pure::{AttrValue, FileBuilder};
use sclabel::io::h5ad::{read_h5ad_source, ReadSeekSource};

const N_OBS: usize = 200_000;
const N_VARS: usize = 1_000;
const PER_CELL: usize = 40;

fn s(v: &str) -> AttrValue {
    AttrValue::VarLenString(v.into())
}

/// Deterministic counts: cell i expresses genes (i·7 + k·23) mod N_VARS, k < PER_CELL (distinct, as 23·k < 1000).
fn synthetic_h5ad() -> Vec<u8> {
    let mut indptr = Vec::with_capacity(N_OBS + 1);
    let mut indices = Vec::with_capacity(N_OBS * PER_CELL);
    let mut data = Vec::with_capacity(N_OBS * PER_CELL);
    indptr.push(0i64);
    for i in 0..N_OBS {
        let mut row: Vec<i32> = (0..PER_CELL).map(|k| ((i * 7 + k * 23) % N_VARS) as i32).collect();
        row.sort_unstable();
        for (k, &g) in row.iter().enumerate() {
            indices.push(g);
            data.push(1.0 + ((i + k) % 5) as f32);
        }
        indptr.push(indices.len() as i64);
    }
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    fb.set_attr("encoding-version", s("0.1.0"));
    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csr_matrix"));
    x.set_attr("encoding-version", s("0.1.0"));
    x.set_attr("shape", AttrValue::I64Array(vec![N_OBS as i64, N_VARS as i64]));
    x.create_dataset("indptr").with_i64_data(&indptr);
    x.create_dataset("indices").with_i32_data(&indices);
    x.create_dataset("data").with_f32_data(&data);
    fb.add_group(x.finish());
    let frame = |g: &mut hdf5_pure::GroupBuilder, names: &[String]| {
        g.set_attr("_index", s("_index"));
        g.set_attr("encoding-type", s("dataframe"));
        g.set_attr("encoding-version", s("0.2.0"));
        g.set_attr("column-order", AttrValue::F64Array(vec![]));
        g.create_dataset("_index").with_vlen_strings(&names.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let mut obs = fb.create_group("obs");
    frame(&mut obs, &(0..N_OBS).map(|i| format!("cell{i}")).collect::<Vec<_>>());
    fb.add_group(obs.finish());
    let mut var = fb.create_group("var");
    frame(&mut var, &(0..N_VARS).map(|g| format!("gene{g}")).collect::<Vec<_>>());
    fb.add_group(var.finish());
    fb.finish().unwrap()
}

#[test]
fn a_200k_cell_file_reads_on_demand() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/synthetic_200k.h5ad");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, synthetic_h5ad()).unwrap();
    let source = ReadSeekSource::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let ad = read_h5ad_source(source, "synthetic_200k.h5ad").unwrap();
    assert_eq!((ad.n_obs(), ad.n_vars(), ad.x.nnz()), (N_OBS, N_VARS, N_OBS * PER_CELL));
    assert_eq!(ad.obs_names[N_OBS - 1], format!("cell{}", N_OBS - 1));
}
