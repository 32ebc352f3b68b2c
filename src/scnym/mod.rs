//! scNym (Kimmel & Kelley 2021): semi-supervised, domain-adversarial cell-type label transfer.
//! `config` (presets, merging) → `model` (classifier + adversary) → `train` (MixMatch, DAN, model
//! selection; `step`: a step's inputs as row recipes; `student`: the step's network work, in burn or —
//! `host_net` — on the host for CPU backends; `metrics`: what a run records) → `bundle` (safetensors
//! model files) → `predict`; `finetune` re-indexes a trained model to new data; `api` ties them to AnnData.
pub mod api;
pub mod bundle;
pub mod config;
pub mod explain;
pub mod finetune;
pub mod host_net;
pub mod import;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod predict;
pub mod step;
pub mod student;
pub mod torch_file;
pub mod train;
