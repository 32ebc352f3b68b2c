//! Host kernels are plain Rust loops that LLVM vectorises. The default x86-64 target assumes only
//! SSE2, so `dispatch_avx2!` compiles a kernel a second time with AVX2 + FMA and picks that copy at
//! run time on CPUs that have them (an `#[inline(always)]` body takes on its caller's features).
//! Elsewhere (wasm32 with simd128, aarch64 with NEON) the one copy is already vectorised.

/// `dispatch_avx2!(pub fn name(args: types) -> ret => generic_body_fn);` defines `name`, which
/// calls `generic_body_fn` compiled with AVX2 + FMA where the CPU has them.
macro_rules! dispatch_avx2 {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:path) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                // SAFETY: the CPU has the features `avx2` is compiled for (checked above).
                return unsafe { avx2($($arg),*) };
            }
            $generic($($arg),*)
        }
    };
}
pub(crate) use dispatch_avx2;

/// `[rows, cols]` row-major → per column tile `[rows, T]` blocks, the last zero-padded (T: the
/// width a kernel accumulates in registers). Kernels read a matrix's column tiles from such a
/// copy: a column tile of a row-major matrix whose rows are a power of two long maps to a few
/// cache sets only and falls out of L1 and L2.
pub fn tile_major<const T: usize>(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::new();
    tile_major_into::<T>(m, rows, cols, &mut out);
    out
}

/// `tile_major` into a buffer the caller keeps.
pub fn tile_major_into<const T: usize>(m: &[f32], rows: usize, cols: usize, out: &mut Vec<f32>) {
    let tiles = cols.div_ceil(T);
    out.clear();
    out.resize(tiles * rows * T, 0.0);
    for (k, row) in m.chunks_exact(cols).enumerate().take(rows) {
        for (t, chunk) in row.chunks(T).enumerate() {
            out[(t * rows + k) * T..][..chunk.len()].copy_from_slice(chunk);
        }
    }
}
