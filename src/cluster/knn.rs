//! Exact k nearest neighbours (Euclidean) on the host, for the over-clustering: a block of rows
//! against all rows by one matrix product (`nn::gemm`, with the augmented columns that turn it
//! into squared distances), each row's k smallest kept as the block is scanned, then their
//! distances recomputed in f64. The device graph (`audit::graph`) does the same on burn, but its
//! sort and selection kernels would add about 0.7 MB to the CPU wasm module (measured
//! 2026-12-05); this needs only the product the host executor already has.
use crate::error::{Result, SclabelError};
use crate::nn::gemm::{matmul, Operand};
use crate::train::progress::{Observer, Progress};

/// Rows per block: one block's [rows × n] squared distances within 2^24 floats (64 MiB).
fn block_rows(n: usize) -> usize {
    ((1usize << 24) / n.max(1)).clamp(1, n.max(1))
}

/// Each point's `k` nearest other points as (index, distance), nearest first (ties by index);
/// `points` row-major [n × d]. Progress: one prediction step per block.
pub async fn knn<O: Observer>(points: &[f32], n: usize, d: usize, k: usize, observer: &mut O) -> Result<Vec<Vec<(u32, f64)>>> {
    if d == 0 || points.len() != n * d {
        return Err(SclabelError::shape(format!("{} values for {n} points × {d} dimensions", points.len())));
    }
    if k == 0 || k >= n {
        return Err(SclabelError::InvalidOption { option: "n_neighbors".into(), reason: format!("must be between 2 and the number of cells ({n})") });
    }
    if let Some(p) = points.iter().position(|v| !v.is_finite()) {
        return Err(SclabelError::values(format!("point {} has a non-finite coordinate ({})", p / d, points[p])));
    }
    // Centred in f64 (distances don't change; the norms in ‖a‖² + ‖b‖² − 2a·b shrink, and with
    // them the f32 cancellation).
    let mut centre = vec![0f64; d];
    points.chunks_exact(d).for_each(|r| r.iter().zip(centre.iter_mut()).for_each(|(&v, c)| *c += v as f64));
    centre.iter_mut().for_each(|c| *c /= n as f64);
    let y: Vec<f64> = points.chunks_exact(d).flat_map(|r| r.iter().zip(&centre).map(|(&v, &c)| v as f64 - c)).collect();
    let sq: Vec<f64> = y.chunks_exact(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    // Points as [d + 2 × n] columns (b; 1; ‖b‖²); queries as rows (−2a; ‖a‖²; 1).
    let w = d + 2;
    let mut cols = vec![0f32; w * n];
    for i in 0..n {
        for c in 0..d {
            cols[c * n + i] = y[i * d + c] as f32;
        }
        cols[d * n + i] = 1.0;
        cols[(d + 1) * n + i] = sq[i] as f32;
    }
    let block = block_rows(n);
    let n_blocks = n.div_ceil(block);
    let mut out = Vec::with_capacity(n);
    let mut dist = vec![0f32; block * n];
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (b, start) in (0..n).step_by(block).enumerate() {
        let rows = block.min(n - start);
        let mut q = Vec::with_capacity(rows * w);
        for i in start..start + rows {
            q.extend(y[i * d..(i + 1) * d].iter().map(|&v| (-2.0 * v) as f32));
            q.push(sq[i] as f32);
            q.push(1.0);
        }
        let dst = &mut dist[..rows * n];
        matmul(dst, rows, n, w, Operand::RowMajor(&q), Operand::RowMajor(&cols), 0.0, false);
        for r in 0..rows {
            let i = start + r;
            best.clear();
            for (j, &v) in dst[r * n..(r + 1) * n].iter().enumerate() {
                if j == i || (best.len() == k && v >= best[k - 1].0) {
                    continue;
                }
                // Insertion into the k kept so far (k is small: tens).
                let at = best.partition_point(|e| e.0 <= v);
                if best.len() == k {
                    best.pop();
                }
                best.insert(at, (v, j as u32));
            }
            // Exact distances of the kept pairs, the same expression for (i, j) and (j, i).
            let mut near: Vec<(u32, f64)> = best
                .iter()
                .map(|&(_, j)| {
                    let (a, c) = (&y[i * d..(i + 1) * d], &y[j as usize * d..(j as usize + 1) * d]);
                    (j, a.iter().zip(c).map(|(x, z)| (x - z) * (x - z)).sum::<f64>().sqrt())
                })
                .collect();
            near.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            out.push(near);
        }
        observer.on_progress(&Progress::predicting(b + 1, n_blocks, start + rows, n)).await?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::train::progress::Silent;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn equals_brute_force() {
        let (n, d, k) = (300, 7, 9);
        let mut rng = StdRng::seed_from_u64(3);
        let points: Vec<f32> = (0..n * d).map(|i| rng.random_range(-3.0f32..3.0) + if i % d == 0 { (i / d % 3) as f32 * 10.0 } else { 0.0 }).collect();
        let got = block_on(knn(&points, n, d, k, &mut Silent)).unwrap();
        let dist = |i: usize, j: usize| (0..d).map(|c| (points[i * d + c] as f64 - points[j * d + c] as f64).powi(2)).sum::<f64>().sqrt();
        for i in 0..n {
            let mut all: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            all.sort_by(|&a, &b| dist(i, a).total_cmp(&dist(i, b)).then(a.cmp(&b)));
            let want: Vec<u32> = all[..k].iter().map(|&j| j as u32).collect();
            assert_eq!(got[i].iter().map(|e| e.0).collect::<Vec<_>>(), want, "row {i}");
            for &(j, v) in &got[i] {
                assert!((v - dist(i, j as usize)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(block_on(knn(&[0.0; 6], 3, 2, 3, &mut Silent)).is_err());
        assert!(block_on(knn(&[0.0; 5], 3, 2, 1, &mut Silent)).is_err());
        assert!(block_on(knn(&[0.0, f32::NAN, 0.0, 0.0, 1.0, 1.0], 3, 2, 1, &mut Silent)).is_err());
    }
}
