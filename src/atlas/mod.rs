//! Atlases: a labelled reference preconverted for fast loading (`matrix`), shipped with a model
//! bundle trained on it, for instant annotation and for fine-tuning in the browser.
pub mod build;
pub mod combine;
pub mod matrix;
pub mod open;
