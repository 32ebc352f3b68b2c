//! Annotatability (Karin et al. 2024): audit annotations from a network's training dynamics.
//! `dynamics` (per-epoch probability of each cell's label → confidence, variability) →
//! `categories` (simulated-noise cutoffs, trusted cells, easy / ambiguous / hard-to-learn) →
//! `genes` (trainability gene scores) and `graph` (trainability-aware kNN graph on a `pca`
//! embedding); `api` runs the audit on an AnnData.
pub mod api;
pub mod categories;
pub mod dynamics;
pub mod genes;
pub mod graph;
pub mod pca;
