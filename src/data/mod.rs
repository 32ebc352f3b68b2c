//! The data core: matrices, AnnData reading, normalisation, gene alignment, label encoding and
//! minibatch sampling. No burn, no I/O beyond bytes.
pub mod align;
pub mod anndata;
pub mod builder;
pub mod h5ad;
pub mod h5ad_export;
pub mod hdf5_append;
pub mod hvg;
pub mod labels;
pub mod matrix;
pub mod normalize;
pub mod row_blocks;
pub mod sampler;
pub mod synthetic;
