//! The products of a dense layer whose input is a training-mode activation (~24% non-zeros after
//! dropout(0.5) and a ReLU, as measured in scNym's hidden layers): `SparseAct`'s kernels against
//! dense gemm on the same shapes, 256 wide, for the pass sizes of a scNym step (256 and 512 rows).
//!   RAYON_NUM_THREADS=1 cargo run --features ndarray,cli --example bench_sparse_act
//! Prints each kernel's time as a fraction of the dense product it replaces (best of 7 runs of 30
//! calls each): building the row and column lists, the forward A·W, the weight gradient Aᵀ·G and
//! the input gradient G·Wᵀ at A's non-zeros; and the whole layer's ratio.
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sclabel::nn::gemm::{matmul, Operand};
use sclabel::nn::simd::tile_major;
use sclabel::nn::sparse_act::{SparseAct, TILE};

fn best(f: &mut dyn FnMut()) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..30 {
                f()
            }
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let (width, n_out) = (256, 256);
    for n in [256, 512] {
        let a: Vec<f32> = (0..n * width).map(|_| if rng.random::<f32>() < 0.24 { rng.random::<f32>() } else { 0.0 }).collect();
        let w: Vec<f32> = (0..width * n_out).map(|_| rng.random::<f32>() - 0.5).collect();
        let g: Vec<f32> = (0..n * n_out).map(|_| rng.random::<f32>() - 0.5).collect();
        let bias = vec![0f32; n_out];
        let (mut out, mut gw, mut gi) = (vec![0f32; n * n_out], vec![0f32; width * n_out], vec![0f32; n * width]);
        let d_fwd = best(&mut || matmul(&mut out, n, n_out, width, Operand::RowMajor(&a), Operand::RowMajor(&w), 1.0, false));
        let d_gw = best(&mut || matmul(&mut gw, width, n_out, n, Operand::Transposed(&a), Operand::RowMajor(&g), 1.0, true));
        let d_gi = best(&mut || matmul(&mut gi, n, width, n_out, Operand::RowMajor(&g), Operand::Transposed(&w), 0.0, false));
        let s_build = best(&mut || {
            std::hint::black_box(SparseAct::from_dense(&a, n, width));
        });
        let s = SparseAct::from_dense(&a, n, width);
        let w_tiles = tile_major::<TILE>(&w, width, n_out);
        let (mut scratch, mut o) = (Vec::new(), Vec::new());
        let s_fwd = best(&mut || s.forward(&w_tiles, &bias, &mut o));
        let s_gw = best(&mut || s.add_weight_grad(&g, &mut gw, &mut scratch));
        let s_gi = best(&mut || s.masked_input_grad(&g, &w, &mut o));
        let gflop = (2 * n * width * n_out * 30) as f64 / 1e9;
        println!("{n} rows × {width} → {n_out}, {:.1}% non-zeros", 100.0 * s.nnz() as f64 / a.len() as f64);
        println!("  dense gemm GFLOP/s: forward {:.1}, weight grad {:.1}, input grad {:.1}", gflop / d_fwd, gflop / d_gw, gflop / d_gi);
        println!(
            "  sparse / dense time: lists {:.2}, forward {:.2}, weight grad {:.2}, input grad {:.2}; layer {:.2}",
            s_build / d_fwd,
            s_fwd / d_fwd,
            s_gw / d_gw,
            s_gi / d_gi,
            (s_build + s_fwd + s_gw + s_gi) / (d_fwd + d_gw + d_gi)
        );
    }
}
