//! Fuzzing every byte parser a user's file reaches, from mutated real inputs (issue 26): the
//! `.h5ad` reader (whole, streamed by blocks, gene-selecting) and the annotated-h5ad export, the
//! scNym checkpoint importer (zip + pickle), model bundles, atlas matrices, and the chunk builder
//! behind the AnnData-Zarr reader (driven by random sequences of calls).
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
