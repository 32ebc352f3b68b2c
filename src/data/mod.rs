//! The data core: matrices, AnnData types, normalisation, gene alignment and identifiers, highly
//! variable genes, label encoding, row sources for training and minibatch sampling. No burn, no I/O
//! (file formats are `crate::io`).
pub mod align;
pub mod anndata;
pub mod hvg;
pub mod labels;
pub mod matrix;
pub mod normalize;
pub mod row_blocks;
pub mod sampler;
pub mod synthetic;
