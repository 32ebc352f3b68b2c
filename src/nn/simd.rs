//! The host kernels' inner loops and their dispatch. Kernels are written once, generic over
//! `Lanes` (the two loops everything else is built around), and compiled twice: with the portable
//! loops, plain Rust that LLVM vectorises (wasm32's simd128, aarch64's NEON; the default x86-64
//! target only has SSE2), and on x86-64 with AVX2 + FMA intrinsics, picked at run time on CPUs
//! that have them. Written out for x86 because LLVM kept auto-vectorised accumulators in memory (a
//! store per register per step, seen in the disassembly) and scrambled the lanes of reductions.

/// Output columns a kernel accumulates per row: four AVX registers, twice (two rows at once).
pub const TILE: usize = 32;

/// The inner loops.
pub trait Lanes {
    /// `Σ vₚ · tile[idxₚ]` over two rows' (index, value) lists (`tile`: `[rows][TILE]`). Two rows
    /// at once: twice the independent chains of adds for one stream of loads.
    fn tile_sum2(a: (&[u32], &[f32]), b: (&[u32], &[f32]), tile: &[[f32; TILE]]) -> [[f32; TILE]; 2];
    /// x · y for four y's (one load of x serves four).
    fn dot4(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4];
}

/// `lanes_dispatch! { pub fn name(args: types) => generic; … }` defines each `name` to run
/// `generic::<Avx2>` compiled with AVX2 + FMA where the CPU has them, else `generic::<Portable>`.
/// The generic bodies are `#[inline(always)]`, so they take on the caller's target features.
macro_rules! lanes_dispatch {
    ($(pub fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident;)*) => {$(
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $generic::<$crate::nn::simd::Avx2>($($arg),*)
                }
                // SAFETY: the CPU has the features `avx2` is compiled for (checked above).
                return unsafe { avx2($($arg),*) };
            }
            $generic::<$crate::nn::simd::Portable>($($arg),*)
        }
    )*};
}
pub(crate) use lanes_dispatch;

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

/// Plain loops that LLVM vectorises.
pub struct Portable;

impl Lanes for Portable {
    #[inline(always)]
    fn tile_sum2((ia, va): (&[u32], &[f32]), (ib, vb): (&[u32], &[f32]), tile: &[[f32; TILE]]) -> [[f32; TILE]; 2] {
        let mut acc = [[0f32; TILE]; 2];
        for (a, (idx, val)) in acc.iter_mut().zip([(ia, va), (ib, vb)]) {
            for (&k, &x) in idx.iter().zip(val) {
                let r = &tile[k as usize];
                for j in 0..TILE {
                    a[j] += x * r[j];
                }
            }
        }
        acc
    }

    #[inline(always)]
    fn dot4(x: &[f32], ys: [&[f32]; 4]) -> [f32; 4] {
        ys.map(|y| {
            let (xc, xt) = x.as_chunks::<8>();
            let (yc, yt) = y.as_chunks::<8>();
            let mut acc = [0f32; 8];
            for (x, y) in xc.iter().zip(yc) {
                for l in 0..8 {
                    acc[l] += x[l] * y[l];
                }
            }
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + xt.iter().zip(yt).map(|(a, b)| a * b).sum::<f32>()
        })
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::Avx2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;
    use std::mem::transmute;

    /// Registers by value from arrays (`_mm256_loadu_ps` copies through memory with
    /// precondition checks in builds with debug assertions); [f32; 8k] and [__m256; k] are
    /// the same bytes.
    #[inline(always)]
    fn v4(r: &[f32; 32]) -> [__m256; 4] {
        // SAFETY: same size, any bit pattern is valid for both.
        unsafe { transmute::<[f32; 32], [__m256; 4]>(*r) }
    }

    #[inline(always)]
    fn v2(r: &[f32; 16]) -> [__m256; 2] {
        // SAFETY: as above.
        unsafe { transmute::<[f32; 16], [__m256; 2]>(*r) }
    }

    /// AVX2 + FMA intrinsics: only for code compiled with those features (`lanes_dispatch!`).
    pub struct Avx2;

    const _: () = assert!(TILE == 32, "the AVX2 tile sum holds 32 lanes per row");

    // SAFETY (the intrinsics in this impl): its methods only run inside the `target_feature`
    // functions above, on CPUs with AVX2 and FMA.
    impl Lanes for Avx2 {
        #[inline(always)]
        fn tile_sum2((ia, va): (&[u32], &[f32]), (ib, vb): (&[u32], &[f32]), tile: &[[f32; TILE]]) -> [[f32; TILE]; 2] {
            unsafe {
                let z = _mm256_setzero_ps();
                // named accumulators stay in registers (arrays of them were spilled)
                let (mut a0, mut a1, mut a2, mut a3, mut b0, mut b1, mut b2, mut b3) = (z, z, z, z, z, z, z, z);
                let common = ia.len().min(ib.len());
                for (((&ka, &xa), &kb), &xb) in ia.iter().zip(va).zip(ib).zip(vb) {
                    // `get`: no panic path in the loop (indices are < the tile's rows by
                    // construction)
                    let (Some(ra), Some(rb)) = (tile.get(ka as usize), tile.get(kb as usize)) else { continue };
                    let ([r0, r1, r2, r3], x) = (v4(ra), _mm256_set1_ps(xa));
                    (a0, a1, a2, a3) = (_mm256_fmadd_ps(x, r0, a0), _mm256_fmadd_ps(x, r1, a1), _mm256_fmadd_ps(x, r2, a2), _mm256_fmadd_ps(x, r3, a3));
                    let ([r0, r1, r2, r3], x) = (v4(rb), _mm256_set1_ps(xb));
                    (b0, b1, b2, b3) = (_mm256_fmadd_ps(x, r0, b0), _mm256_fmadd_ps(x, r1, b1), _mm256_fmadd_ps(x, r2, b2), _mm256_fmadd_ps(x, r3, b3));
                }
                let rest = |idx: &[u32], val: &[f32], mut acc: [__m256; 4]| {
                    for (&k, &x) in idx[common..].iter().zip(&val[common..]) {
                        let Some(r) = tile.get(k as usize) else { continue };
                        let ([r0, r1, r2, r3], x) = (v4(r), _mm256_set1_ps(x));
                        acc = [_mm256_fmadd_ps(x, r0, acc[0]), _mm256_fmadd_ps(x, r1, acc[1]), _mm256_fmadd_ps(x, r2, acc[2]), _mm256_fmadd_ps(x, r3, acc[3])];
                    }
                    transmute::<[__m256; 4], [f32; 32]>(acc)
                };
                [rest(ia, va, [a0, a1, a2, a3]), rest(ib, vb, [b0, b1, b2, b3])]
            }
        }

        #[inline(always)]
        fn dot4(x: &[f32], [ya, yb, yc, yd]: [&[f32]; 4]) -> [f32; 4] {
            unsafe {
                let z = _mm256_setzero_ps();
                let (mut a0, mut a1, mut b0, mut b1, mut c0, mut c1, mut d0, mut d1) = (z, z, z, z, z, z, z, z);
                let (xc, xt) = x.as_chunks::<16>();
                let whole = x.len() - xt.len();
                for ((((x, a), b), c), d) in
                    xc.iter().zip(ya.as_chunks::<16>().0).zip(yb.as_chunks::<16>().0).zip(yc.as_chunks::<16>().0).zip(yd.as_chunks::<16>().0)
                {
                    let [x0, x1] = v2(x);
                    let [p0, p1] = v2(a);
                    (a0, a1) = (_mm256_fmadd_ps(x0, p0, a0), _mm256_fmadd_ps(x1, p1, a1));
                    let [p0, p1] = v2(b);
                    (b0, b1) = (_mm256_fmadd_ps(x0, p0, b0), _mm256_fmadd_ps(x1, p1, b1));
                    let [p0, p1] = v2(c);
                    (c0, c1) = (_mm256_fmadd_ps(x0, p0, c0), _mm256_fmadd_ps(x1, p1, c1));
                    let [p0, p1] = v2(d);
                    (d0, d1) = (_mm256_fmadd_ps(x0, p0, d0), _mm256_fmadd_ps(x1, p1, d1));
                }
                let (sa, sb, sc, sd) = (_mm256_add_ps(a0, a1), _mm256_add_ps(b0, b1), _mm256_add_ps(c0, c1), _mm256_add_ps(d0, d1));
                // [a01 a23 b01 b23 | a45 a67 b45 b67], then [a b c d | a' b' c' d'], then halves summed
                let t = _mm256_hadd_ps(_mm256_hadd_ps(sa, sb), _mm256_hadd_ps(sc, sd));
                let sum = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps::<1>(t));
                let mut out = transmute::<__m128, [f32; 4]>(sum);
                for (o, y) in out.iter_mut().zip([ya, yb, yc, yd]) {
                    *o += xt.iter().zip(&y[whole..]).map(|(p, q)| p * q).sum::<f32>();
                }
                out
            }
        }
    }
}
