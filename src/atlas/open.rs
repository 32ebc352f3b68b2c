//! Opening an atlas package natively (the CLI, examples, tests): the manifest is checked first
//! (format and versions), then each file against its SHA-256, then parsed. The browser does the
//! same steps in JS (`openAtlas`), fetching each file only after the manifest passed.
use burn::prelude::Device;

use super::build::{sha256_hex, MANIFEST_FORMAT, MANIFEST_VERSION};
use super::matrix::AtlasMatrix;
use crate::scnym::api::TransferOptions;
use crate::scnym::bundle::ScnymModel;
use crate::{Result, SclabelError};

pub struct OpenedAtlas {
    pub manifest: serde_json::Value,
    pub matrix: AtlasMatrix,
    pub model: ScnymModel,
}

fn bad(file: &str, reason: impl Into<String>) -> SclabelError {
    SclabelError::InvalidFile { file: file.into(), reason: reason.into() }
}

/// `manifest` is atlas.json's bytes; `read(path)` returns the bytes of a file it names.
pub fn open_atlas(manifest: &[u8], mut read: impl FnMut(&str) -> Result<Vec<u8>>, device: &Device) -> Result<OpenedAtlas> {
    let manifest: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| bad("atlas.json", format!("not JSON: {e}")))?;
    if manifest["format"] != MANIFEST_FORMAT {
        return Err(bad("atlas.json", format!("format is {}, not '{MANIFEST_FORMAT}'", manifest["format"])));
    }
    match manifest["format_version"].as_u64() {
        Some(v) if v <= MANIFEST_VERSION as u64 => {}
        Some(v) => {
            return Err(SclabelError::UnsupportedVersion {
                file: "atlas.json".into(),
                what: "format version".into(),
                found: v.to_string(),
                supported: format!("up to {MANIFEST_VERSION}"),
                advice: "update sclabel".into(),
            })
        }
        None => return Err(bad("atlas.json", "format_version is missing or not a whole number")),
    }
    let mut file = |part: &str| -> Result<Vec<u8>> {
        let entry = &manifest["files"][part];
        let path = entry["path"].as_str().ok_or_else(|| bad("atlas.json", format!("files.{part}.path missing")))?;
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

impl OpenedAtlas {
    /// Options to fine-tune on this atlas's matrix: its label (and domain) column, and no
    /// re-normalisation of the stored ln(CPM+1) values (the query's own `normalize` is separate).
    pub fn transfer_options(&self, query_normalize: bool, preset: &str, config: Option<serde_json::Value>) -> TransferOptions {
        TransferOptions {
            label_key: self.matrix.label_key.clone(),
            domain_key: self.matrix.domain_key.clone(),
            preset: preset.into(),
            config,
            normalize: false,
            query_normalize: Some(query_normalize),
            ..Default::default()
        }
    }
}
