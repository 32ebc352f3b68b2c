//! Opening an atlas package natively (the CLI, examples, tests): the manifest is checked first
//! (format and versions, `check_manifest`), then each file against its SHA-256, then parsed. The
//! browser takes the same steps (`openAtlas`: the same `check_manifest`, then each file fetched).
use burn::prelude::Device;

use super::build::{sha256_hex, MANIFEST_FORMAT, MANIFEST_VERSION};
use super::matrix::AtlasMatrix;
use crate::scnym::api::TransferOptions;
use crate::scnym::bundle::{ScnymModel, FORMAT_VERSION as BUNDLE_FORMAT_VERSION};
use crate::{Result, SclabelError};

pub struct OpenedAtlas {
    pub manifest: serde_json::Value,
    pub matrix: AtlasMatrix,
    pub model: ScnymModel,
}

fn bad(file: &str, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: file.into(), reason: reason.into() }
}

/// atlas.json (`bytes`; `file` names it in messages) checked before any file it names is read:
/// its format, its format version, the paths of the model and the matrix, and the bundle format
/// its model needs. Every door uses it (`open_atlas`, the browser's `openAtlas`, which fetches
/// nothing else until it passed).
pub fn check_manifest(bytes: &[u8], file: &str) -> Result<serde_json::Value> {
    let manifest: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(file, format!("not JSON (an atlas.json was expected): {e}")))?;
    if manifest["format"] != MANIFEST_FORMAT {
        return Err(bad(file, format!("format is {}, not '{MANIFEST_FORMAT}'", manifest["format"])));
    }
    let too_new = |what: &str, found: u64, supported: u32| SclabelError::UnsupportedVersion {
        file: file.into(),
        what: what.into(),
        found: found.to_string(),
        supported: format!("up to {supported}"),
        advice: "update sclabel".into(),
    };
    match manifest["format_version"].as_u64() {
        Some(v) if v <= MANIFEST_VERSION as u64 => {}
        Some(v) => return Err(too_new("format version", v, MANIFEST_VERSION)),
        None => return Err(bad(file, "format_version is missing or not a whole number")),
    }
    for part in ["model", "matrix"] {
        if manifest["files"][part]["path"].as_str().is_none_or(str::is_empty) {
            return Err(bad(file, format!("files.{part}.path is missing or empty: 'files' must name the model and the matrix")));
        }
    }
    match manifest["files"]["model"]["bundle_format_version"].as_u64() {
        Some(v) if v <= BUNDLE_FORMAT_VERSION as u64 => {}
        Some(v) => return Err(too_new("model bundle format", v, BUNDLE_FORMAT_VERSION)),
        None => return Err(bad(file, "files.model.bundle_format_version is missing or not a whole number")),
    }
    Ok(manifest)
}

/// `manifest` is atlas.json's bytes; `read(path)` returns the bytes of a file it names.
pub fn open_atlas(manifest: &[u8], mut read: impl FnMut(&str) -> Result<Vec<u8>>, device: &Device) -> Result<OpenedAtlas> {
    let manifest = check_manifest(manifest, "atlas.json")?;
    let mut file = |part: &str| -> Result<Vec<u8>> {
        let entry = &manifest["files"][part];
        let path = entry["path"].as_str().unwrap_or_default(); // present: check_manifest made sure
        let bytes = read(path)?;
        let want = entry["sha256"].as_str().unwrap_or_default();
        if sha256_hex(&bytes) != want {
            return Err(bad(path, format!("SHA-256 differs from atlas.json's ({want}): the file is damaged or from another build")));
        }
        Ok(bytes)
    };
    let matrix_bytes = file("matrix")?;
    let model_bytes = file("model")?;
    let matrix = AtlasMatrix::from_bytes(&matrix_bytes)?;
    let model = ScnymModel::from_bytes(&model_bytes, device)?;
    Ok(OpenedAtlas { manifest, matrix, model })
}

/// Fine-tuning an atlas's model on a query (scNym's atlas → target path): what a caller may
/// choose, with the defaults every door uses (JS `fineTuneAtlas`, `sclabel train --atlas`). The
/// atlas itself fixes the label and domain columns, and its stored ln(CPM+1) values are taken as
/// they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct AtlasFineTuneOptions {
    /// scNym preset of the fine-tuning; default as `trainScnym`'s, `new_identity_discovery` (a
    /// user's query may hold cell types the atlas lacks).
    #[cfg_attr(test, ts(type = "ScnymPreset"))]
    pub preset: String,
    /// scNym config keys merged into a copy of the preset.
    #[cfg_attr(test, ts(as = "Option<crate::scnym::config::ScnymConfig>"))]
    pub config: Option<serde_json::Value>,
    /// Bring the query to the atlas's ln(CPM+1) from whatever scale it is detected on (default
    /// true: a query must match the atlas's scale, and the report says what was found).
    pub normalize: bool,
    /// Use the query's `.raw` instead of its X.
    pub use_raw: bool,
    /// Atlas labels to leave out of training.
    pub exclude_labels: Vec<String>,
    /// As `TransferOptions::max_query_cells`.
    pub max_query_cells: Option<usize>,
}

impl Default for AtlasFineTuneOptions {
    fn default() -> Self {
        let t = TransferOptions::default();
        Self { preset: t.preset, config: None, normalize: true, use_raw: false, exclude_labels: Vec::new(), max_query_cells: t.max_query_cells }
    }
}

/// The training options of fine-tuning on an atlas whose reference has these label and domain
/// columns: the atlas's values as they are (`normalize: false`), the query's per `options`.
pub fn fine_tune_options(label_key: &str, domain_key: Option<&str>, options: &AtlasFineTuneOptions) -> TransferOptions {
    TransferOptions {
        label_key: label_key.into(),
        domain_key: domain_key.map(Into::into),
        exclude_labels: options.exclude_labels.clone(),
        preset: options.preset.clone(),
        config: options.config.clone(),
        normalize: false,
        use_raw: false,
        query_use_raw: Some(options.use_raw),
        query_normalize: Some(options.normalize),
        max_query_cells: options.max_query_cells,
        ..Default::default()
    }
}

impl OpenedAtlas {
    /// [`fine_tune_options`] for this atlas.
    pub fn fine_tune_options(&self, options: &AtlasFineTuneOptions) -> TransferOptions {
        fine_tune_options(&self.matrix.label_key, self.matrix.domain_key.as_deref(), options)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_manifest_is_checked_before_its_files() {
        let ok = serde_json::json!({ "format": "sclabel-atlas", "format_version": 1, "files": { "model": { "path": "m", "bundle_format_version": 1 }, "matrix": { "path": "x" } } });
        let check = |v: &serde_json::Value| check_manifest(v.to_string().as_bytes(), "a/atlas.json");
        assert!(check(&ok).is_ok());
        let mut newer = ok.clone();
        newer["files"]["model"]["bundle_format_version"] = 9.into();
        assert!(matches!(check(&newer), Err(SclabelError::UnsupportedVersion { ref what, .. }) if what == "model bundle format"));
        newer["format_version"] = 2.into();
        assert!(matches!(check(&newer), Err(SclabelError::UnsupportedVersion { ref what, .. }) if what == "format version"));
        let mut no_matrix = ok.clone();
        no_matrix["files"].as_object_mut().unwrap().remove("matrix");
        assert!(matches!(check(&no_matrix), Err(SclabelError::InvalidFile { ref reason, .. }) if reason.contains("files.matrix.path")));
        assert!(matches!(check_manifest(b"{ no", "a/atlas.json"), Err(SclabelError::InvalidFile { ref file, .. }) if file == "a/atlas.json"));
    }

    use super::*;

    #[test]
    fn fine_tune_defaults_are_trainings_and_the_atlas_keeps_its_values() {
        let o: AtlasFineTuneOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, AtlasFineTuneOptions::default());
        let t = fine_tune_options("cell_type", Some("study"), &o);
        assert_eq!((t.preset.as_str(), t.max_query_cells), (TransferOptions::default().preset.as_str(), TransferOptions::default().max_query_cells));
        assert_eq!((t.normalize, t.use_raw, t.query_normalize, t.query_use_raw), (false, false, Some(true), Some(false)));
        assert_eq!((t.label_key.as_str(), t.domain_key.as_deref()), ("cell_type", Some("study")));
        let e = serde_json::from_str::<AtlasFineTuneOptions>(r#"{"label_key": "x"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `label_key`"), "{e}");
    }
}
