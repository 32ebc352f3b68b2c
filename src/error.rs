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
    #[error("{reason}")]
    InvalidValues { reason: String, place: Box<Place> },
    /// Shapes that do not fit together.
    #[error("shape mismatch: {reason}")]
    ShapeMismatch { reason: String, place: Box<Place> },
    /// Gene lists that cannot be aligned (no shared genes, duplicates).
    #[error("{reason}")]
    Genes { reason: String, place: Box<Place> },
    /// Labels that cannot be trained on (one class, empty …).
    #[error("{reason}")]
    Labels { reason: String, place: Box<Place> },
    /// An option outside its allowed values.
    #[error("invalid option '{option}': {reason}")]
    InvalidOption { option: String, reason: String },
    /// The compute backend could not be started or failed.
    #[error("backend '{backend}' unavailable: {reason}")]
    Backend { backend: String, reason: String },
    /// The caller cancelled the run.
    #[error("cancelled")]
    Cancelled,
    /// A file written by a newer (or, for atlas matrices, another) version of its format.
    #[error("{file}: {what} {found}; this sclabel reads {supported}: {advice}")]
    UnsupportedVersion { file: String, what: String, found: String, supported: String, advice: String },
    /// An allocation that scales with the data would pass the memory limit (see `memory`).
    #[error("too large: {what} needs about {} of memory and {} is available here; {advice}", human(*need), human(*available))]
    TooLarge { what: String, need: u64, available: u64, advice: String },
}

/// Where in the user's data a problem is, as far as the code that found it knows: what a host can
/// point at (`error.details` in JS) beside the message, which says the same in words. Boxed in the
/// variants, so that every `Result` stays small.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Place {
    /// An obs column (labels, domains, splits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gene: Option<String>,
    /// A cell's name (obs index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// A cell's row (0-based), where its name is not at hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
}

impl SclabelError {
    pub fn values(reason: impl Into<String>) -> Self {
        Self::InvalidValues { reason: reason.into(), place: Box::default() }
    }

    pub fn shape(reason: impl Into<String>) -> Self {
        Self::ShapeMismatch { reason: reason.into(), place: Box::default() }
    }

    pub fn genes(reason: impl Into<String>) -> Self {
        Self::Genes { reason: reason.into(), place: Box::default() }
    }

    pub fn labels(reason: impl Into<String>) -> Self {
        Self::Labels { reason: reason.into(), place: Box::default() }
    }

    /// The place of a values / shape / genes / labels error (other variants carry their own fields).
    fn place_mut(&mut self) -> Option<&mut Place> {
        match self {
            Self::InvalidValues { place, .. } | Self::ShapeMismatch { place, .. } | Self::Genes { place, .. } | Self::Labels { place, .. } => Some(place),
            _ => None,
        }
    }

    fn with(mut self, set: impl FnOnce(&mut Place)) -> Self {
        if let Some(p) = self.place_mut() {
            set(p);
        }
        self
    }

    pub fn in_column(self, column: impl Into<String>) -> Self {
        self.with(|p| p.column = Some(column.into()))
    }

    pub fn at_gene(self, gene: impl Into<String>) -> Self {
        self.with(|p| p.gene = Some(gene.into()))
    }

    pub fn at_cell(self, cell: impl Into<String>) -> Self {
        self.with(|p| p.cell = Some(cell.into()))
    }

    pub fn at_row(self, row: usize) -> Self {
        self.with(|p| p.row = Some(row))
    }

    /// The error's fields as data (file, column, gene, cell, row, option, version …): what the
    /// bindings hand JS as `error.details`, so a host can point at the problem without parsing
    /// the message.
    pub fn details(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::InvalidFile { file, .. } => json!({ "file": file }),
            Self::UnsupportedLayout { file, element, .. } => json!({ "file": file, "element": element }),
            Self::ColumnNotFound { column, .. } => json!({ "column": column }),
            Self::InvalidValues { place, .. } | Self::ShapeMismatch { place, .. } | Self::Genes { place, .. } | Self::Labels { place, .. } => {
                serde_json::to_value(place).unwrap_or_default()
            }
            Self::InvalidOption { option, .. } => json!({ "option": option }),
            Self::Backend { backend, .. } => json!({ "backend": backend }),
            Self::Cancelled => json!({}),
            Self::UnsupportedVersion { file, what, found, supported, .. } => json!({ "file": file, "what": what, "found": found, "supported": supported }),
            Self::TooLarge { what, need, available, .. } => json!({ "what": what, "need": need, "available": available }),
        }
    }

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
            Self::InvalidValues { .. } => "invalid_values",
            Self::ShapeMismatch { .. } => "shape_mismatch",
            Self::Genes { .. } => "genes",
            Self::Labels { .. } => "labels",
            Self::InvalidOption { .. } => "invalid_option",
            Self::Backend { .. } => "backend",
            Self::Cancelled => "cancelled",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::TooLarge { .. } => "too_large",
        }
    }
}

/// Bytes as people read them (MiB / GiB).
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Every `error.code` a caller of sclabel can see, with its meaning: the core's (one per
/// [`SclabelError`] variant) and those only the JS layer raises (a trap, a dead worker, a closed
/// client). The bindings export this list (`errorCodes()`), and the JS tests check that the JS
/// layer and `index.d.ts` use exactly these.
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("invalid_file", "the bytes are not a readable file of the expected kind (truncated, wrong format, corrupt)"),
    ("unsupported_layout", "an AnnData element is missing or laid out in a way sclabel does not read"),
    ("column_not_found", "an obs column asked for is not there"),
    ("invalid_values", "matrix values the operation cannot use (non-finite, negative, wrong scale)"),
    ("shape_mismatch", "shapes that do not fit together"),
    ("genes", "gene lists that cannot be matched (none shared, duplicates)"),
    ("labels", "labels that cannot be trained on"),
    ("invalid_option", "an option outside its allowed values"),
    ("backend", "the compute backend could not start or failed"),
    ("cancelled", "the caller cancelled the run"),
    ("unsupported_version", "a file from a newer version of its format: update sclabel"),
    ("too_large", "the data would not fit in memory here (a budget, checked before allocating)"),
    ("crashed", "JS layer: the wasm module trapped; the message names the operation and phase"),
    ("device_lost", "JS layer: the GPU device was lost; the client carries on on the CPU (data sets kept, GPU models gone)"),
    ("worker_failed", "JS layer: the worker could not start or died"),
    ("closed", "JS layer: the client was closed"),
    ("internal", "JS layer: an error without a code (a bug: please report it)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_carry_the_place_as_data() {
        let e = SclabelError::labels("no value").in_column("cell_type").at_cell("AAAC-1").at_row(4);
        assert_eq!(e.details(), serde_json::json!({ "column": "cell_type", "cell": "AAAC-1", "row": 4 }));
        assert_eq!(e.to_string(), "no value", "the message is the reason, unchanged");
        let e = SclabelError::values("x").at_gene("CD3E");
        assert_eq!(e.details(), serde_json::json!({ "gene": "CD3E" }));
        // Variants with fields of their own keep them; the builders leave them be.
        let e = SclabelError::InvalidOption { option: "lr".into(), reason: "must be positive".into() }.at_gene("ignored");
        assert_eq!(e.details(), serde_json::json!({ "option": "lr" }));
    }

    #[test]
    fn every_variant_has_a_listed_code() {
        let s = || String::new();
        let all = [
            SclabelError::InvalidFile { file: s(), reason: s() },
            SclabelError::UnsupportedLayout { file: s(), element: s(), reason: s() },
            SclabelError::ColumnNotFound { column: s(), available: s() },
            SclabelError::values(s()),
            SclabelError::shape(s()),
            SclabelError::genes(s()),
            SclabelError::labels(s()),
            SclabelError::InvalidOption { option: s(), reason: s() },
            SclabelError::Backend { backend: s(), reason: s() },
            SclabelError::Cancelled,
            SclabelError::UnsupportedVersion { file: s(), what: s(), found: s(), supported: s(), advice: s() },
            SclabelError::TooLarge { what: s(), need: 0, available: 0, advice: s() },
        ];
        for e in &all {
            assert!(ERROR_CODES.iter().any(|(c, _)| *c == e.code()), "{} is not in ERROR_CODES", e.code());
        }
        let mut codes: Vec<&str> = ERROR_CODES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ERROR_CODES.len(), "a code is listed twice");
    }
}
