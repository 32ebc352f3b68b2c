//! One error type for the whole core. Each variant is one meaning, so bindings can map it to a
//! stable `code` without parsing messages.
use thiserror::Error;

pub type Result<T> = std::result::Result<T, SclabelError>;

#[derive(Debug, Error)]
pub enum SclabelError {
    /// The bytes are not a readable HDF5 / h5ad file (truncated, wrong format, corrupt).
    #[error("{file}: can't be read: {reason}")]
    InvalidFile { file: String, reason: String },
    /// The file is HDF5 but an AnnData element is missing or laid out in a way we don't read.
    #[error("{file}: unsupported or malformed AnnData element '{element}': {reason}")]
    UnsupportedLayout { file: String, element: String, reason: String },
    /// A column asked for is not in obs.
    #[error("obs has no column '{column}' (available: {available})")]
    ColumnNotFound { column: String, available: String },
    /// Matrix values that the requested operation cannot use (NaN, negatives, wrong scale …).
    #[error("{0}")]
    InvalidValues(String),
    /// Shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// Gene lists that cannot be aligned (no shared genes, duplicates).
    #[error("{0}")]
    Genes(String),
    /// Labels that cannot be trained on (one class, empty …).
    #[error("{0}")]
    Labels(String),
    /// An option outside its allowed values.
    #[error("invalid option '{option}': {reason}")]
    InvalidOption { option: String, reason: String },
    /// The compute backend could not be started or failed.
    #[error("backend '{backend}' unavailable: {reason}")]
    Backend { backend: String, reason: String },
    /// The caller cancelled the run.
    #[error("cancelled")]
    Cancelled,
    /// An allocation that scales with the data would pass the memory limit (see `memory`).
    #[error("too large: {what} needs about {} of memory and {} is available here; {advice}", crate::memory::human(*need), crate::memory::human(*available))]
    TooLarge { what: String, need: u64, available: u64, advice: String },
}

impl SclabelError {
    /// A device operation (read-back, transaction) failed.
    pub fn backend(device: &impl std::fmt::Debug, reason: impl std::fmt::Debug) -> Self {
        Self::Backend { backend: format!("{device:?}"), reason: format!("{reason:?}") }
    }

    /// Stable machine-readable code for each variant (used by the JS layer as `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidFile { .. } => "invalid_file",
            Self::UnsupportedLayout { .. } => "unsupported_layout",
            Self::ColumnNotFound { .. } => "column_not_found",
            Self::InvalidValues(_) => "invalid_values",
            Self::ShapeMismatch(_) => "shape_mismatch",
            Self::Genes(_) => "genes",
            Self::Labels(_) => "labels",
            Self::InvalidOption { .. } => "invalid_option",
            Self::Backend { .. } => "backend",
            Self::Cancelled => "cancelled",
            Self::TooLarge { .. } => "too_large",
        }
    }
}
