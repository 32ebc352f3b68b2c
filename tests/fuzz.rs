//! Fuzzing every byte parser a user's file reaches, from mutated real inputs (issue 26): the
//! `.h5ad` reader (whole, streamed by blocks, gene-selecting) and the annotated-h5ad export, the
//! scNym checkpoint importer (zip + pickle), model bundles, atlas matrices, and the chunk builder
//! behind the AnnData-Zarr reader (driven by random sequences of calls); and, structure-aware,
//! generated `.h5ad` trees and torch.save archives whose pickles are built from the opcodes a
//! state dict uses (an input is a generator's seed).
//!
//! Time-boxed for CI: `SCLABEL_FUZZ_SECS` (default 60) is shared between the targets. A longer run:
//!     SCLABEL_FUZZ_SECS=1800 cargo test --features ndarray,cli --test fuzz -- --nocapture
//!
//! For every input: no panic; `Ok` or an `Err` (every `SclabelError` has a code); at most
//! `TIME_BOUND` (an input still running after `HANG_BOUND` ends the run, saved); at most
//! 256 MiB + 4096 × the input's length allocated at once beyond what was live before. An input that breaks one is saved to `tests/fuzz_corpus/<target>/` and the test
//! fails naming the file; every file there is replayed first on every run, so an input that ever
//! failed stays a regression test. The input running is also kept in
//! `target/fuzz-inflight/<target>.bin` until it returns, so an abort leaves it behind.
//! Seeds: `tests/fixtures/fuzz/` (remade by `scripts/make-fuzz-seeds.py`), the link-cycle fixture,
//! and bundles and atlas matrices made here.
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sclabel::atlas::matrix::{AtlasMatrix, ValueEncoding};
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::synthetic::{synthetic_counts, SyntheticSpec};
use sclabel::io::builder::{AnnDataBuilder, DenseBlock, Layout as XLayout, Target};
use sclabel::io::h5ad::{open_h5ad_rows, read_h5ad, read_h5ad_source_genes, ColumnMap, ReadSeekSource};
use sclabel::io::h5ad_export::{annotate_h5ad, H5adAdditions, ObsValues};
use sclabel::memory;
use sclabel::scnym::bundle::ScnymModel;
use sclabel::scnym::import::import_scnym;
use sclabel::SclabelError;

// The crate's counting allocator (sclabel::memory) gives the bytes live and their peak; this
// binary holds one test, so nothing else allocates while an input runs.

const TIME_BOUND: Duration = Duration::from_secs(10);
/// An input still running after this is a hang: the watchdog saves it to the corpus and ends the
/// process with a failure (a thread cannot be stopped from outside).
const HANG_BOUND: Duration = Duration::from_secs(60);

/// When the running input started (ms since the Unix epoch), 0 when none runs.
static RUNNING_SINCE_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn start_watchdog(inflight_dir: PathBuf) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        let since = RUNNING_SINCE_MS.load(Ordering::Relaxed);
        if since != 0 && now_ms().saturating_sub(since) > HANG_BOUND.as_millis() as u64 {
            for entry in std::fs::read_dir(&inflight_dir).into_iter().flatten().flatten() {
                let (path, target) = (entry.path(), entry.path().file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default());
                if let Ok(input) = std::fs::read(&path) {
                    eprintln!("{}", save_failure(&target, &input, &format!("still running after {HANG_BOUND:?} (a hang)")));
                }
            }
            std::process::exit(101);
        }
    });
}

fn allocation_bound(input_len: usize) -> usize {
    (256 << 20) + 4096 * input_len
}

// ------------------------------------------------------------------------------ targets

/// One parser under test: its seeds, and how to run an input through it.
struct FuzzTarget {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: Box<dyn Fn(&[u8]) -> Result<(), SclabelError>>,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap_or_else(|e| panic!("tests/fixtures/{name}: {e}"))
}

fn device() -> burn::prelude::Device {
    cpu(BackendRequest::Cpu, "fuzz").unwrap().device
}

const GENES: usize = 12;
const CLASSES: usize = 3;

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix}{k}")).collect()
}

fn targets() -> Vec<FuzzTarget> {
    let h5ad_seeds = vec![fixture("fuzz/csr_gzip.h5ad"), fixture("fuzz/dense.h5ad"), fixture("link_cycle.h5ad")];
    let checkpoint = fixture("fuzz/scnym_small.pt");
    let dev = device();
    let model = import_scnym(&checkpoint, "scnym_small.pt", names("GENE", GENES), names("type", CLASSES), &dev).expect("the checkpoint seed imports");
    let bundle = block_on(model.to_bytes()).unwrap();
    // The same bundle without its checksum (as bundles saved before it had), so mutated weights
    // reach the loader's own checks instead of stopping at the checksum.
    let unchecked = {
        let st = safetensors::SafeTensors::deserialize(&bundle).unwrap();
        let (_, header) = safetensors::SafeTensors::read_metadata(&bundle).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        meta.remove("tensors_sha256");
        safetensors::serialize(st.tensors(), Some(meta)).unwrap()
    };
    let ad = synthetic_counts(&SyntheticSpec { n_cells: 60, n_genes: 20, n_classes: 3, seed: 1, ..SyntheticSpec::default() });
    let matrix = AtlasMatrix::from_reference(&ad, &ad.x, &ad.var_names, "cell_type", Some("batch"), None, 0).unwrap();
    let matrices = [ValueEncoding::Q8, ValueEncoding::F16, ValueEncoding::F32].map(|e| matrix.to_bytes(e).unwrap()).to_vec();

    let d1 = dev.clone();
    let d2 = dev.clone();
    let d3 = dev.clone();
    vec![
        FuzzTarget {
            name: "h5ad",
            seeds: h5ad_seeds.clone(),
            run: Box::new(|b| {
                let whole = read_h5ad(b, "fuzz.h5ad").map(|_| ());
                // The streamed reader: statistics, then every column by blocks.
                let rows = open_h5ad_rows(ReadSeekSource::new(Cursor::new(b.to_vec())).expect("a cursor"), "fuzz.h5ad", false).and_then(|rows| {
                    rows.value_stats()?;
                    rows.read_kept(&ColumnMap::all(rows.n_cols), "fuzz", "", |_, _| {})?;
                    Ok(())
                });
                let genes = read_h5ad_source_genes(ReadSeekSource::new(Cursor::new(b.to_vec())).expect("a cursor"), "fuzz.h5ad", &names("GENE", 5)).map(|_| ());
                whole.and(rows).and(genes)
            }),
        },
        FuzzTarget {
            name: "h5ad_export",
            seeds: h5ad_seeds,
            run: Box::new(|b| {
                let labels = (0..40).map(|k| Some(format!("t{}", k % 3))).collect();
                let additions = H5adAdditions { obs: vec![("scNym".into(), ObsValues::Categorical(labels))], obsm: Vec::new() };
                annotate_h5ad(b.to_vec(), "fuzz.h5ad", &additions).map(|_| ())
            }),
        },
        FuzzTarget {
            name: "torch_checkpoint",
            seeds: vec![checkpoint],
            run: Box::new(move |b| import_scnym(b, "fuzz.pt", names("GENE", GENES), names("type", CLASSES), &d1).map(|_| ())),
        },
        FuzzTarget { name: "bundle", seeds: vec![bundle, unchecked], run: Box::new(move |b| ScnymModel::from_bytes(b, &d2).map(|_| ())) },
        FuzzTarget { name: "atlas_matrix", seeds: matrices, run: Box::new(|b| AtlasMatrix::from_bytes(b).map(|_| ())) },
        FuzzTarget {
            name: "pickle_structured",
            // An input is the seed of a generated torch.save archive (8 bytes, little-endian).
            seeds: (0u64..4).map(|s| s.to_le_bytes().to_vec()).collect(),
            run: Box::new(move |b| {
                let archive = torch_archive(seed_of(b));
                import_scnym(&archive, "structured.pt", names("GENE", GENES), names("type", CLASSES), &d3).map(|_| ())
            }),
        },
        FuzzTarget {
            name: "h5ad_structured",
            // An input is the seed of a generated AnnData-layout HDF5 file (8 bytes, little-endian).
            seeds: (0u64..4).map(|s| s.to_le_bytes().to_vec()).collect(),
            run: Box::new(|b| {
                let file = h5ad_tree(seed_of(b));
                let whole = read_h5ad(&file, "structured.h5ad");
                // A column of the file's length, so that a readable file reaches the export's writing.
                let n = whole.as_ref().map_or(4, |ad| ad.n_obs());
                let whole = whole.map(|_| ());
                let rows = open_h5ad_rows(ReadSeekSource::new(Cursor::new(file.clone())).expect("a cursor"), "structured.h5ad", false).and_then(|rows| {
                    rows.value_stats()?;
                    rows.read_kept(&ColumnMap::all(rows.n_cols), "fuzz", "", |_, _| {})?;
                    Ok(())
                });
                let additions = H5adAdditions { obs: vec![("scNym".into(), ObsValues::F32(vec![0.5; n]))], obsm: Vec::new() };
                let export = annotate_h5ad(file, "structured.h5ad", &additions).map(|_| ());
                whole.and(rows).and(export)
            }),
        },
        FuzzTarget {
            name: "zarr_builder",
            // An input is the seed of a random sequence of builder calls (8 bytes, little-endian).
            seeds: (0u64..4).map(|s| s.to_le_bytes().to_vec()).collect(),
            run: Box::new(|b| {
                let mut seed = [0u8; 8];
                seed[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
                builder_calls(u64::from_le_bytes(seed))
            }),
        },
    ]
}

/// A random sequence of `AnnDataBuilder` calls, as a broken or hostile Zarr store would cause.
/// Most sequences follow a real reader's order with nearly valid parts (names, then `indptr`,
/// `indices` and `data` in step, or dense blocks), each value off by a little now and then, so
/// the builder gets past its first checks; the rest are calls in any order with any values.
/// Errors are expected; the builder must never panic.
fn builder_calls(seed: u64) -> Result<(), SclabelError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let layout = [XLayout::Csr, XLayout::Csc, XLayout::Dense][rng.random_range(0..3)];
    let (n_obs, n_vars) = (rng.random_range(0..7usize), rng.random_range(0..7usize));
    let major = if layout == XLayout::Csc { n_vars } else { n_obs };
    let minor = if layout == XLayout::Csc { n_obs } else { n_vars };
    // A plausible sparse matrix: per-major counts, then offsets, indices and values.
    let counts: Vec<usize> = (0..major).map(|_| rng.random_range(0..=minor)).collect();
    let mut indptr = vec![0i64];
    for c in &counts {
        indptr.push(indptr.last().unwrap() + *c as i64);
    }
    let nnz = *indptr.last().unwrap() as usize;
    let mut indices: Vec<i64> = counts.iter().flat_map(|&c| (0..c as i64).collect::<Vec<_>>()).collect();
    let mut data: Vec<f64> = (0..nnz).map(|_| rng.random_range(1..9) as f64).collect();
    let mut dense: Vec<f64> = (0..n_obs * n_vars).map(|_| if rng.random_bool(0.5) { 0.0 } else { rng.random_range(1..9) as f64 }).collect();
    // Now and then a value that is a little wrong.
    let odd_f = [f64::NAN, f64::INFINITY, -1.0, 1e300, 0.5];
    let odd_i = [-1i64, 1 << 40, minor as i64, major as i64 + 1];
    if rng.random_bool(0.3) && !indices.is_empty() {
        let k = rng.random_range(0..indices.len());
        indices[k] = odd_i[rng.random_range(0..odd_i.len())];
    }
    if rng.random_bool(0.3) && !indptr.is_empty() {
        let k = rng.random_range(0..indptr.len());
        indptr[k] = odd_i[rng.random_range(0..odd_i.len())];
    }
    for v in [&mut data, &mut dense] {
        if rng.random_bool(0.2) && !v.is_empty() {
            let k = rng.random_range(0..v.len());
            v[k] = odd_f[rng.random_range(0..odd_f.len())];
        }
    }
    let declared_nnz = if rng.random_bool(0.9) { nnz } else { [0, nnz + 1, usize::MAX / 2][rng.random_range(0..3)] };
    let mut b = AnnDataBuilder::new("fuzz.zarr", n_obs, n_vars, layout, declared_nnz)?;
    let mut outcome = Ok(());
    let mut note = |r: Result<(), SclabelError>| outcome = std::mem::replace(&mut outcome, Ok(())).and(r);
    if rng.random_bool(0.8) {
        note(b.set_obs_names(names("c", n_obs)));
        note(b.set_var_names(Target::X, names("GENE", n_vars)));
        if rng.random_bool(0.4) {
            let keep: Vec<String> = names("GENE", n_vars).into_iter().filter(|_| rng.random_bool(0.5)).collect();
            note(b.keep_genes(Target::X, &keep).map(|_| ()));
        }
        if layout == XLayout::Dense {
            // Whole rows, or row bands of column blocks.
            if rng.random_bool(0.5) {
                note(b.push_dense_rows(Target::X, &dense));
            } else if n_vars > 0 {
                let (br, bc) = (rng.random_range(1..=n_obs.max(1)), rng.random_range(1..=n_vars));
                for r0 in (0..n_obs).step_by(br) {
                    for c0 in (0..n_vars).step_by(bc) {
                        let (nr, nc) = (br.min(n_obs - r0), bc.min(n_vars - c0));
                        let block = DenseBlock {
                            start_row: r0,
                            start_col: c0,
                            n_rows: nr,
                            n_cols: nc,
                            values: &dense[r0 * n_vars + c0..],
                            row_stride: n_vars,
                            col_stride: 1,
                        };
                        note(b.push_dense_block(Target::X, block));
                    }
                }
            }
        } else {
            let split = |len: usize, rng: &mut StdRng| -> Vec<usize> {
                let mut cuts: Vec<usize> = (0..rng.random_range(0..3)).map(|_| rng.random_range(0..=len)).collect();
                cuts.push(len);
                cuts.sort_unstable();
                cuts
            };
            let mut from = 0;
            for to in split(indptr.len(), &mut rng) {
                note(b.push_indptr(Target::X, &indptr[from..to]));
                from = to;
            }
            let (mut fi, mut fd) = (0, 0);
            for to in split(nnz, &mut rng) {
                note(b.push_indices(Target::X, &indices[fi..to.min(indices.len())]));
                fi = to.min(indices.len());
                note(b.push_data(Target::X, &data[fd..to.min(data.len())]));
                fd = to.min(data.len());
            }
        }
        if rng.random_bool(0.5) {
            note(b.add_obs_categorical("t", &(0..n_obs as i64).map(|k| k % 3 - 1).collect::<Vec<_>>(), names("k", 2)));
        }
    }
    // Then calls in any order with any values.
    let target = |rng: &mut StdRng| if rng.random_bool(0.8) { Target::X } else { Target::Raw };
    let ints = |rng: &mut StdRng| -> Vec<i64> { (0..rng.random_range(0..8)).map(|_| rng.random_range(-2i64..25)).collect() };
    let floats = |rng: &mut StdRng| -> Vec<f64> {
        (0..rng.random_range(0..40)).map(|_| if rng.random_bool(0.2) { odd_f[rng.random_range(0..5)] } else { rng.random_range(0..5) as f64 }).collect()
    };
    for _ in 0..rng.random_range(0..6) {
        let r = match rng.random_range(0..11) {
            0 => b.push_indptr(target(&mut rng), &ints(&mut rng)),
            1 => b.push_indices(target(&mut rng), &ints(&mut rng)),
            2 => b.push_data(target(&mut rng), &floats(&mut rng)),
            3 => b.push_dense_rows(target(&mut rng), &floats(&mut rng)),
            4 => {
                let v = floats(&mut rng);
                let mut n = || rng.random_range(0..5usize);
                let block = DenseBlock { start_row: n(), start_col: n(), n_rows: n(), n_cols: n(), values: &v, row_stride: n(), col_stride: n() };
                b.push_dense_block(target(&mut rng), block)
            }
            5 => b.set_obs_names(names("c", rng.random_range(0..8))),
            6 => b.set_var_names(target(&mut rng), names("GENE", rng.random_range(0..8))),
            7 => b.keep_genes(target(&mut rng), &names("GENE", rng.random_range(0..4))).map(|_| ()),
            8 => {
                let layout = [XLayout::Csr, XLayout::Csc, XLayout::Dense][rng.random_range(0..3)];
                b.begin_raw(rng.random_range(0..6), layout, rng.random_range(0..12))
            }
            9 => b.add_obs_categorical("t2", &ints(&mut rng), names("k", rng.random_range(0..4))),
            _ => b.add_obs_numeric("n", &floats(&mut rng), None),
        };
        note(r);
    }
    let finished = b.finish().map(|_| ());
    outcome.and(finished)
}

// ------------------------------------------------------------------------------ structure-aware inputs

/// The generator seed an input stands for (its first 8 bytes, little-endian).
fn seed_of(b: &[u8]) -> u64 {
    let mut seed = [0u8; 8];
    seed[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(seed)
}

/// A zip archive of stored entries, as torch.save writes it (no compression, no CRC check here).
fn stored_zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut central) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let local = out.len() as u32;
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        central.extend_from_slice(b"PK\x01\x02");
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&local.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A generated torch.save archive of a state dict, built from the pickle opcodes a state dict
/// uses: mostly scNym's tensors with the right names and shapes (so the importer gets past its
/// first checks), now and then with a shape, offset or stride that is huge, negative or of another
/// rank, another storage type, a missing or short storage, values that are not tensors, nesting,
/// memo references (dangling, or repeated into a "billion laughs"), and stray opcodes.
fn torch_archive(seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut p: Vec<u8> = vec![0x80, 2, b'}', b'q', 0, b'('];
    let unicode = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: i64| {
        p.push(0x8a);
        p.push(8);
        p.extend_from_slice(&v.to_le_bytes());
    };
    let odd = [-1i64, 0, 1, i64::MAX, i64::MIN, 1 << 40, u32::MAX as i64];
    let hidden = 8usize;
    let mut tensors: Vec<(String, Vec<usize>)> = Vec::new();
    for (layer, width_in) in [(0, GENES), (4, hidden), (8, hidden)] {
        tensors.push((format!("embed.{layer}.weight"), vec![hidden, width_in]));
        tensors.push((format!("embed.{layer}.bias"), vec![hidden]));
        for part in ["weight", "bias", "running_mean", "running_var"] {
            tensors.push((format!("embed.{}.{part}", layer + 1), vec![hidden]));
        }
    }
    tensors.push(("classif.0.weight".into(), vec![CLASSES, hidden]));
    tensors.push(("classif.0.bias".into(), vec![CLASSES]));
    let mut storages: Vec<(String, Vec<u8>)> = Vec::new();
    let mut memo_next = 1u8;
    for (name, shape) in tensors {
        if rng.random_bool(0.005) {
            continue; // a missing tensor
        }
        unicode(&mut p, &name);
        // Most archives hold only well-formed tensors, so that the importer's later checks run too.
        let corrupt = rng.random_bool(0.03);
        match if corrupt { rng.random_range(0..9) } else { 9 } {
            0 => int(&mut p, odd[rng.random_range(0..odd.len())]),
            1 => p.push(b'N'),
            2 => {
                // a memo reference, often to nothing
                p.extend_from_slice(&[b'h', rng.random_range(0..4)]);
            }
            3 => {
                // a list doubled through memo references, level after level
                p.extend_from_slice(&[b']', b'q', memo_next]);
                let mut last = memo_next;
                for _ in 0..rng.random_range(1..40) {
                    memo_next = memo_next.wrapping_add(1).max(1);
                    p.extend_from_slice(&[b']', b'(', b'h', last, b'h', last, b'e', b'q', memo_next]);
                    last = memo_next;
                }
            }
            4 => {
                // deep nesting
                for _ in 0..rng.random_range(1..5000) {
                    p.push(b']');
                    p.push(b'(');
                }
            }
            _ => {
                let numel: usize = shape.iter().product();
                let key = storages.len().to_string();
                p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
                // the storage: a persistent id ('storage', <type>, key, 'cpu', numel)
                p.push(b'(');
                unicode(&mut p, "storage");
                let kind = if corrupt { ["DoubleStorage", "LongStorage", "HalfStorage"][rng.random_range(0..3)] } else { "FloatStorage" };
                let module = if corrupt && rng.random_bool(0.3) { "os" } else { "torch" };
                p.extend_from_slice(format!("c{module}\n{kind}\n").as_bytes());
                unicode(&mut p, &key);
                unicode(&mut p, "cpu");
                int(&mut p, numel as i64);
                p.extend_from_slice(b"tQ");
                let width = if kind == "DoubleStorage" || kind == "LongStorage" { 8 } else { 4 };
                let mut offset = 0i64;
                let mut dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                let mut strides: Vec<i64> = (0..dims.len()).map(|k| dims[k + 1..].iter().product()).collect();
                match if corrupt { rng.random_range(0..5) } else { 5 } {
                    0 => offset = odd[rng.random_range(0..odd.len())],
                    1 if !dims.is_empty() => dims[0] = odd[rng.random_range(0..odd.len())],
                    2 if !strides.is_empty() => strides[0] = odd[rng.random_range(0..odd.len())],
                    3 => dims.push(2),
                    _ => {}
                }
                int(&mut p, offset);
                p.push(b'(');
                dims.iter().for_each(|&d| int(&mut p, d));
                p.push(b't');
                p.push(b'(');
                strides.iter().for_each(|&d| int(&mut p, d));
                p.push(b't');
                p.extend_from_slice(&[0x89, b'c']);
                p.extend_from_slice(b"collections\nOrderedDict\n)R");
                p.extend_from_slice(b"tR");
                // its bytes: usually enough, sometimes short or empty
                let bytes = match if corrupt { rng.random_range(0..3) } else { 2 } {
                    0 => 0,
                    1 => numel * width / 2,
                    _ => numel * width,
                };
                let data: Vec<u8> = (0..bytes).map(|k| if k % 4 == 3 { 0x3f } else { rng.random() }).collect();
                storages.push((key, data));
            }
        }
        if rng.random_bool(0.005) {
            p.push([b'b', b'a', b's', b'u', b'e', b't', 0x94, 0xff][rng.random_range(0..8)]);
            // a stray opcode
        }
    }
    p.extend_from_slice(b"u.");
    let mut entries = vec![("archive/data.pkl".to_string(), p), ("archive/version".to_string(), b"3\n".to_vec())];
    entries.extend(storages.into_iter().map(|(k, d)| (format!("archive/data/{k}"), d)));
    stored_zip(&entries)
}

/// A generated `.h5ad` in the layout h5py writes: X (CSR, CSC or dense; sometimes another
/// encoding, a shape that is huge, zero or disagrees with the arrays, index arrays out of range
/// or decreasing, values of another type or non-finite), obs and var dataframes (sometimes
/// without their index, with names of another length, a categorical column with codes out of
/// range or no categories), a `.raw`, and elements missing now and then.
fn h5ad_tree(seed: u64) -> Vec<u8> {
    use sclabel::io::hdf5_append::{new_file, Element, Entry, Tail, Values};
    let mut rng = StdRng::seed_from_u64(seed);
    let (n_obs, n_vars) = (rng.random_range(0..6usize), rng.random_range(0..6usize));
    // Half the files are well formed; the others have one thing wrong, chosen here.
    let wrong = if rng.random_bool(0.5) { usize::MAX } else { rng.random_range(0..14) };
    let bad = |k: usize| wrong == k;
    new_file(|t| {
        let enc = |t: &mut Tail, kind: &str, version: &str| vec![t.string_attribute("encoding-type", kind), t.string_attribute("encoding-version", version)];
        let odd = [-1i64, 0, 1, 7, i64::MAX, 1 << 40];
        let mut entries = Vec::new();
        // X
        if !bad(0) {
            let kind = if bad(1) { "dataframe" } else { ["csr_matrix", "csc_matrix", "array"][rng.random_range(0..3)] };
            let (major, minor) = if kind == "csc_matrix" { (n_vars, n_obs) } else { (n_obs, n_vars) };
            if kind == "array" {
                let len = if bad(2) { rng.random_range(0..40) } else { n_obs * n_vars };
                let v: Vec<f32> = (0..len).map(|k| if bad(3) && k == 0 { f32::NAN } else { rng.random_range(0..9) as f32 }).collect();
                let attrs = enc(t, "array", "0.2.0");
                let dims = if bad(4) { vec![rng.random_range(0..1u64 << 40)] } else { vec![n_obs as u64, n_vars as u64] };
                let x = t.dataset(Element::F32, &dims, Values::F32(&v), &attrs);
                entries.push(Entry::dataset("X", x));
            } else {
                let mut indptr = vec![0i64];
                let mut indices = Vec::new();
                for _ in 0..major {
                    let c = rng.random_range(0..=minor);
                    indices.extend((0..c as i64).map(|k| if bad(5) && rng.random_bool(0.3) { odd[rng.random_range(0..odd.len())] } else { k }));
                    indptr.push(indices.len() as i64);
                }
                if bad(6) && !indptr.is_empty() {
                    let k = rng.random_range(0..indptr.len());
                    indptr[k] = odd[rng.random_range(0..odd.len())];
                }
                let data: Vec<f32> = (0..indices.len() + usize::from(bad(7))).map(|_| rng.random_range(1..9) as f32).collect();
                let mut attrs = enc(t, kind, "0.1.0");
                let shape = if bad(8) { vec![odd[rng.random_range(0..odd.len())], n_vars as i64] } else { vec![n_obs as i64, n_vars as i64] };
                attrs.push(Tail::i64s_attribute("shape", &shape));
                let idx32: Vec<i32> = indices.iter().map(|&v| v as i32).collect();
                let mut parts = vec![Entry::dataset("indptr", t.dataset(Element::I64, &[indptr.len() as u64], Values::I64(&indptr), &[]))];
                if !bad(9) {
                    parts.push(Entry::dataset("indices", t.dataset(Element::I32, &[idx32.len() as u64], Values::I32(&idx32), &[])));
                }
                let data_element = if bad(10) { Element::Str } else { Element::F32 };
                let data = match data_element {
                    Element::Str => t.dataset(Element::Str, &[1], Values::Strings(&["not a number"]), &[]),
                    _ => t.dataset(Element::F32, &[data.len() as u64], Values::F32(&data), &[]),
                };
                parts.push(Entry::dataset("data", data));
                let g = t.group(parts, &attrs);
                entries.push(Entry::group("X", &g));
            }
        }
        // obs and var
        for (name, n) in [("obs", n_obs), ("var", n_vars)] {
            if bad(11) && rng.random_bool(0.5) {
                continue;
            }
            let len = if bad(12) { rng.random_range(0..8) } else { n };
            let names: Vec<String> = (0..len).map(|k| format!("{name}{k}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut cols = Vec::new();
            if !(bad(11) && rng.random_bool(0.5)) {
                let attrs = enc(t, "string-array", "0.2.0");
                cols.push(Entry::dataset("_index", t.dataset(Element::Str, &[refs.len() as u64], Values::Strings(&refs), &attrs)));
            }
            let mut order = Vec::new();
            if name == "obs" && rng.random_bool(0.7) {
                let attrs = enc(t, "string-array", "0.2.0");
                let n_cat = if bad(13) { rng.random_range(0..2) } else { rng.random_range(1..4) };
                let cats: Vec<String> = (0..n_cat).map(|k| format!("type{k}")).collect();
                let cat_refs: Vec<&str> = cats.iter().map(String::as_str).collect();
                let categories = t.dataset(Element::Str, &[cat_refs.len() as u64], Values::Strings(&cat_refs), &attrs);
                let codes: Vec<u8> = (0..len).map(|k| if bad(13) && rng.random_bool(0.5) { rng.random() } else { (k % n_cat.max(1)) as u8 }).collect();
                let attrs = enc(t, "array", "0.2.0");
                let codes = t.dataset(Element::I8, &[codes.len() as u64], Values::Bytes(&codes), &attrs);
                let mut attrs = enc(t, "categorical", "0.2.0");
                attrs.push(Tail::bool_attribute("ordered", false));
                let g = t.group(vec![Entry::dataset("categories", categories), Entry::dataset("codes", codes)], &attrs);
                cols.push(Entry::group("cell_type", &g));
                order.push("cell_type".to_string());
            }
            if bad(12) && rng.random_bool(0.5) {
                order.push("missing_column".into());
            }
            let mut attrs = enc(t, "dataframe", "0.2.0");
            attrs.push(t.string_attribute("_index", "_index"));
            attrs.push(t.strings_attribute("column-order", &order));
            let g = t.group(cols, &attrs);
            entries.push(Entry::group(name, &g));
        }
        let attrs = enc(t, "anndata", "0.1.0");
        t.group(entries, &attrs)
    })
}

// ------------------------------------------------------------------------------ mutation

/// One to four random edits of `seed`: bit flips, boundary bytes and integers (sizes, offsets and
/// counts live in little-endian integers), truncation, copies within the input, insertions, and
/// splices from another seed.
fn mutate(rng: &mut StdRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..v.len());
        match rng.random_range(0..7) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = [0, 1, 0x7f, 0x80, 0xff][rng.random_range(0..5)],
            2 => {
                let len = v.len() as u64;
                let x: u64 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000, u64::MAX, len, len * 2, 1 << 40][rng.random_range(0..9)];
                let width = [4, 8][rng.random_range(0..2)];
                let bytes = x.to_le_bytes();
                let n = width.min(v.len() - at);
                v[at..at + n].copy_from_slice(&bytes[..n]);
            }
            3 => v.truncate(at),
            4 => {
                let n = rng.random_range(1..=64.min(v.len() - at));
                let piece = v[at..at + n].to_vec();
                let to = rng.random_range(0..v.len());
                for (k, &x) in piece.iter().enumerate().take(v.len() - to) {
                    v[to + k] = x;
                }
            }
            5 => {
                let n = rng.random_range(1..16);
                let piece: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, piece);
            }
            _ => {
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let n = rng.random_range(1..=256.min(other.len() - from));
                    let end = (at + n).min(v.len());
                    v.splice(at..end, other[from..from + n].iter().copied());
                }
            }
        }
    }
    v
}

// ------------------------------------------------------------------------------ the runner

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus").join(target)
}

/// Runs one input: whether it was refused (an `Err`), or the broken invariant.
fn check(target: &FuzzTarget, input: &[u8], inflight: &Path) -> Result<bool, String> {
    let _ = std::fs::write(inflight, input);
    let base = memory::live_bytes();
    memory::reset_peak();
    let start = Instant::now();
    RUNNING_SINCE_MS.store(now_ms(), Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(input)));
    RUNNING_SINCE_MS.store(0, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let grew = memory::peak_bytes().saturating_sub(base) as usize;
    let _ = std::fs::remove_file(inflight);
    match outcome {
        Err(panic) => {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(format!("panicked: {what}"))
        }
        Ok(_) if elapsed > TIME_BOUND => Err(format!("took {elapsed:?} (bound {TIME_BOUND:?})")),
        Ok(_) if grew > allocation_bound(input.len()) => {
            Err(format!("allocated {} MiB at once (bound {} MiB)", grew >> 20, allocation_bound(input.len()) >> 20))
        }
        Ok(Err(e)) if e.code().is_empty() || e.to_string().is_empty() => Err(format!("an error without a code or message: {e:?}")),
        Ok(r) => Ok(r.is_err()),
    }
}

/// Saves a failing input to the corpus and returns the failure message naming it.
fn save_failure(target: &str, input: &[u8], why: &str) -> String {
    let dir = corpus_dir(target);
    let _ = std::fs::create_dir_all(&dir);
    let name = format!("{:016x}.bin", input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    format!("{target}: {why} — input saved as {}", path.display())
}

#[test]
fn parsers_survive_mutated_inputs() {
    let secs: f64 = std::env::var("SCLABEL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let seed: u64 = std::env::var("SCLABEL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x05c1_abe1);
    let inflight_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-inflight");
    std::fs::create_dir_all(&inflight_dir).unwrap();
    start_watchdog(inflight_dir.clone());
    let targets = targets();
    let per_target = Duration::from_secs_f64(secs / targets.len() as f64);
    let mut failures = Vec::new();
    for (t_index, target) in targets.iter().enumerate() {
        let inflight = inflight_dir.join(format!("{}.bin", target.name));
        // Regression corpus and the seeds themselves, then mutations until the time box ends.
        let mut replayed = 0;
        if let Ok(dir) = std::fs::read_dir(corpus_dir(target.name)) {
            for entry in dir.flatten() {
                let input = std::fs::read(entry.path()).unwrap();
                if let Err(why) = check(target, &input, &inflight) {
                    failures.push(format!("{}: corpus file {} still fails: {why}", target.name, entry.path().display()));
                }
                replayed += 1;
            }
        }
        for s in &target.seeds {
            if let Err(why) = check(target, s, &inflight) {
                failures.push(save_failure(target.name, s, &format!("a seed fails: {why}")));
            }
        }
        let mut rng = StdRng::seed_from_u64(seed ^ (t_index as u64) << 32);
        let (start, mut runs, mut errors) = (Instant::now(), 0usize, 0usize);
        while start.elapsed() < per_target {
            let s = &target.seeds[rng.random_range(0..target.seeds.len())];
            let other = &target.seeds[rng.random_range(0..target.seeds.len())];
            let input = if target.name == "zarr_builder" { rng.random::<u64>().to_le_bytes().to_vec() } else { mutate(&mut rng, s, other) };
            runs += 1;
            match check(target, &input, &inflight) {
                Ok(refused) => errors += usize::from(refused),
                Err(why) => {
                    failures.push(save_failure(target.name, &input, &why));
                    if failures.len() >= 5 {
                        break;
                    }
                }
            }
        }
        println!(
            "# fuzz {}: {runs} mutated inputs in {:.1} s ({errors} refused with an error), {replayed} corpus files",
            target.name,
            start.elapsed().as_secs_f64()
        );
    }
    assert!(failures.is_empty(), "{} broken invariants:\n{}", failures.len(), failures.join("\n"));
}
