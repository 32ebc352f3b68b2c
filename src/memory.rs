//! A memory budget instead of a trap. In wasm an allocation past 4 GiB aborts the module
//! (`RuntimeError: unreachable`, no reason given); natively a big file can take the machine's
//! memory. So before each allocation that scales with the data (a matrix read whole, a normalised
//! copy, the per-cell outputs of a prediction) the core asks [`reserve`], which refuses with
//! `SclabelError::TooLarge` — saying what is too big and what to do — when the live heap plus the
//! request would pass the limit.
//!
//! In use: natively, the live heap, counted by a thin wrapper around the system allocator (one
//! relaxed atomic add per allocation and free). In wasm, the module's memory size: the same wrapper
//! there made the module 0.7 MB larger (measured: 17.95 → 18.66 MB raw), and memory never shrinks,
//! so after a big run freed space still counts as used — a conservative check, whose message says
//! that a new client starts with fresh memory. Limits: in wasm, 4 GiB minus [`WASM_HEADROOM`];
//! natively none unless set ([`set_limit`], the CLI's `--memory-limit-gib`).
#[cfg(not(target_family = "wasm"))]
use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(not(target_family = "wasm"))]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, SclabelError};

/// Room kept for what is not counted ahead: the wasm stack and data, the JS glue's copies, burn's
/// buffers and the allocator's fragmentation.
pub const WASM_HEADROOM: u64 = 512 << 20;
const WASM_MAX: u64 = 4 << 30;

#[cfg(not(target_family = "wasm"))]
struct Counting;

#[cfg(not(target_family = "wasm"))]
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since [`reset_peak`] (for tests and benchmarks: the fuzz test bounds
/// what one input may allocate).
#[cfg(not(target_family = "wasm"))]
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[cfg(not(target_family = "wasm"))]
#[inline]
fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}
/// 0: no limit.
static LIMIT: AtomicU64 = AtomicU64::new(if cfg!(target_family = "wasm") { WASM_MAX - WASM_HEADROOM } else { 0 });

// SAFETY: every call is forwarded to `System` unchanged; the counter is bookkeeping only.
#[cfg(not(target_family = "wasm"))]
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[cfg(not(target_family = "wasm"))]
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes in use: natively the live heap; in wasm the module's memory size (see the module note).
pub fn live_bytes() -> u64 {
    #[cfg(target_family = "wasm")]
    return core::arch::wasm32::memory_size(0) as u64 * 65536;
    #[cfg(not(target_family = "wasm"))]
    return LIVE.load(Ordering::Relaxed) as u64;
}

/// Natively, the most bytes live at once since the last [`reset_peak`] (0 in wasm).
pub fn peak_bytes() -> u64 {
    #[cfg(target_family = "wasm")]
    return 0;
    #[cfg(not(target_family = "wasm"))]
    return PEAK.load(Ordering::Relaxed) as u64;
}

/// Starts a new peak at the bytes live now.
pub fn reset_peak() {
    #[cfg(not(target_family = "wasm"))]
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The limit in bytes (`None`: unlimited).
pub fn limit() -> Option<u64> {
    match LIMIT.load(Ordering::Relaxed) {
        0 => None,
        l => Some(l),
    }
}

/// Sets the limit (`None`: unlimited; in wasm it never exceeds 4 GiB minus the headroom).
pub fn set_limit(bytes: Option<u64>) {
    let cap = if cfg!(target_family = "wasm") { WASM_MAX - WASM_HEADROOM } else { u64::MAX };
    LIMIT.store(bytes.map_or(if cfg!(target_family = "wasm") { cap } else { 0 }, |b| b.clamp(1, cap)), Ordering::Relaxed);
}

/// Checks that `bytes` more fit under the limit; `what` names the allocation ("X of data.h5ad
/// (2,000,000 stored values)") and `advice` says what to do instead.
pub fn reserve(what: &str, bytes: u64, advice: &str) -> Result<()> {
    check(limit(), live_bytes(), what, bytes, advice)
}

fn check(limit: Option<u64>, live: u64, what: &str, bytes: u64, advice: &str) -> Result<()> {
    let Some(limit) = limit else { return Ok(()) };
    if live.saturating_add(bytes) <= limit {
        return Ok(());
    }
    // In wasm, memory freed by earlier runs still counts (see the module note).
    let fresh = if cfg!(target_family = "wasm") { " (memory used by earlier runs stays with this client: a new client starts afresh)" } else { "" };
    Err(SclabelError::TooLarge { what: what.to_string(), need: bytes, available: limit.saturating_sub(live), advice: format!("{advice}{fresh}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_refuses_past_the_limit_with_what_and_advice() {
        assert!(check(None, 1 << 40, "anything", 1 << 40, "").is_ok(), "no limit");
        assert!(check(Some(100 << 20), 10 << 20, "a small thing", 1 << 20, "").is_ok());
        let e = check(Some(3 << 30), 1 << 30, "X of big.h5ad", 5 << 30, "predict it streamed").unwrap_err();
        assert_eq!(e.code(), "too_large");
        let m = e.to_string();
        assert!(m.contains("X of big.h5ad") && m.contains("5.0 GiB") && m.contains("2.0 GiB") && m.contains("predict it streamed"), "{m}");
    }

    #[test]
    fn the_allocator_counts_live_bytes() {
        // Other tests allocate in parallel: only a lower bound holds while `v` lives.
        let v: Vec<u8> = vec![1; 64 << 20];
        assert!(live_bytes() >= 64 << 20);
        assert_eq!(v[12345], 1);
    }
}
