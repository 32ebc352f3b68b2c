//! File formats in and out: `.h5ad` read whole or a block of cells at a time keeping chosen genes
//! (`h5ad`), an AnnData built from chunks as a chunked reader (AnnData-Zarr, read in JS) pushes
//! them (`builder`), annotated copies of a user's `.h5ad` (`h5ad_export`) and the HDF5 appending
//! they use for files h5py wrote (`hdf5_append`), and the restricted pickle reader for Python
//! tools' model files (`pickle`). Bytes or a random-access source in, plain Rust
//! values out; no file system (natively the CLI opens files and hands them over).
pub mod builder;
pub mod h5ad;
pub mod h5ad_export;
pub mod hdf5_append;
pub mod pickle;
