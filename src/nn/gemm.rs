//! Dense matrix products on the host (the `gemm` crate), the lowest layer of the host executor:
//! `host_linear`, `host_mlp` and scNym's `host_net` all build on it.

/// A gemm operand stored row-major: as it is, or read transposed. `RowMajor(a)` with a of shape
/// [r, c] is the matrix a; `Transposed(a)` is aᵀ, shape [c, r].
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    RowMajor(&'a [f32]),
    Transposed(&'a [f32]),
}

/// dst[m, n] (row-major) ← decay·dst + lhs[m, k] · rhs[k, n]; `read_dst = false` ignores dst's
/// contents. Large products use rayon's pool natively (burn's CPU kernels share it).
pub fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, lhs: Operand, rhs: Operand, decay: f32, read_dst: bool) {
    assert_eq!(dst.len(), m * n, "matmul destination");
    // (pointer, column stride, row stride) of an operand of logical shape [rows, cols].
    let strides = |op: Operand, rows: usize, cols: usize| match op {
        Operand::RowMajor(a) => {
            assert_eq!(a.len(), rows * cols, "matmul operand");
            (a.as_ptr(), 1isize, cols as isize)
        }
        Operand::Transposed(a) => {
            assert_eq!(a.len(), rows * cols, "matmul operand");
            (a.as_ptr(), rows as isize, 1isize)
        }
    };
    let (lp, lcs, lrs) = strides(lhs, m, k);
    let (rp, rcs, rrs) = strides(rhs, k, n);
    #[cfg(not(target_family = "wasm"))]
    let parallelism = match rayon::current_num_threads() {
        threads if threads > 1 && m * n * k >= 192 * 192 * 192 => gemm::Parallelism::Rayon(threads),
        _ => gemm::Parallelism::None,
    };
    #[cfg(target_family = "wasm")]
    let parallelism = gemm::Parallelism::None;
    // SAFETY: every operand's length was checked against the shape its strides describe, and dst
    // is an exclusive borrow that the operands (shared borrows) cannot alias.
    unsafe {
        gemm::gemm(m, n, k, dst.as_mut_ptr(), 1, n as isize, read_dst, lp, lcs, lrs, rp, rcs, rrs, decay, 1.0, false, false, false, parallelism);
    }
}
