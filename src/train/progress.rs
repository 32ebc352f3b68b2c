//! Progress reporting and cancellation between training steps. The core knows no JS: the wasm
//! bindings implement `Observer` by calling the user's callback and yielding to the event loop.
use serde::{Deserialize, Serialize};
use std::future::Future;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Train,
    Predict,
}

/// One progress event. `loss` / `accuracy` are set at the end of each epoch (reading them
/// every step would stall the GPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Progress {
    pub phase: Phase,
    pub epoch: usize,
    pub n_epochs: usize,
    pub step: usize,
    pub steps_per_epoch: usize,
    pub cells_done: usize,
    pub cells_total: usize,
    pub loss: Option<f32>,
    pub accuracy: Option<f32>,
}

impl Progress {
    /// A prediction batch finished (prediction has no epochs or losses).
    pub fn predicting(step: usize, steps: usize, cells_done: usize, cells_total: usize) -> Self {
        Self { phase: Phase::Predict, epoch: 0, n_epochs: 1, step, steps_per_epoch: steps, cells_done, cells_total, loss: None, accuracy: None }
    }
}

/// Called between steps. Returning `Err(SclabelError::Cancelled)` stops the run.
pub trait Observer {
    fn on_progress(&mut self, progress: &Progress) -> impl Future<Output = Result<()>>;
}

/// Ignores progress (tests, native calls that don't report).
pub struct Silent;
impl Observer for Silent {
    async fn on_progress(&mut self, _: &Progress) -> Result<()> {
        Ok(())
    }
}

/// Wraps a plain closure (native CLI progress bars, tests that cancel).
pub struct FnObserver<F: FnMut(&Progress) -> Result<()>>(pub F);
impl<F: FnMut(&Progress) -> Result<()>> Observer for FnObserver<F> {
    async fn on_progress(&mut self, progress: &Progress) -> Result<()> {
        (self.0)(progress)
    }
}
