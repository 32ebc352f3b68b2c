//! scNym's training configuration: every key and default of scNym 0.4's `CONFIGS` (same names, so
//! a user's scNym JSON config carries over), the five presets, and merging a user config into a
//! *copy* of a preset. Departures from the reference are marked "fix:".
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum OptimizerName {
    Adadelta,
    Adam,
    Adamw,
    Sgd,
}

/// Augmentation of labelled cells before MixUp (scNym's `AUGMENTATION_SCHEMES`, the two we carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Augmentation {
    /// expm1 → dropout(p = 0.1) → rescale each cell to 1e6 → log1p.
    Log1pDrop,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum UnsupCriterion {
    Mse,
    Ce,
}

/// Architecture (scNym's `model_kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct ModelKwargs {
    pub n_hidden: usize,
    pub n_hidden_init: usize,
    /// Hidden blocks after the first: the default 2 gives three hidden Linear layers.
    pub n_layers: usize,
    pub init_dropout: f64,
    pub residual: bool,
}

impl Default for ModelKwargs {
    fn default() -> Self {
        Self { n_hidden: 256, n_hidden_init: 256, n_layers: 2, init_dropout: 0.0, residual: false }
    }
}

/// Semi-supervised and adversarial settings (scNym's `ssl_kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct SslKwargs {
    pub augment_pseudolabels: bool,
    pub augment: Augmentation,
    pub unsup_criterion: UnsupCriterion,
    pub n_augmentations: usize,
    #[serde(rename = "T")]
    pub t: f64,
    pub ramp_epochs: usize,
    pub burn_in_epochs: usize,
    pub dan_criterion: bool,
    pub dan_ramp_epochs: usize,
    pub dan_max_weight: f64,
    pub dan_burn_in_epochs: usize,
    pub min_epochs: Option<usize>,
    pub pseudolabel_min_confidence: f64,
    pub dan_use_conf_pseudolabels: bool,
    pub dan_scale_loss_pseudoconf: bool,
    pub decay_coef: f64,
    /// fix: scNym's `no_ssl` sets this but never reads it; here it overrides the top-level
    /// `unsup_max_weight` when present.
    pub unsup_max_weight: Option<f64>,
}

impl Default for SslKwargs {
    fn default() -> Self {
        Self {
            augment_pseudolabels: false,
            augment: Augmentation::Log1pDrop,
            unsup_criterion: UnsupCriterion::Mse,
            n_augmentations: 1,
            t: 0.5,
            ramp_epochs: 100,
            burn_in_epochs: 0,
            dan_criterion: true,
            dan_ramp_epochs: 20,
            dan_max_weight: 0.1,
            dan_burn_in_epochs: 0,
            min_epochs: Some(20),
            pseudolabel_min_confidence: 0.0,
            dan_use_conf_pseudolabels: false,
            dan_scale_loss_pseudoconf: false,
            decay_coef: 0.997,
            unsup_max_weight: None,
        }
    }
}

/// The whole training configuration. Defaults are scNym's `default` preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct ScnymConfig {
    pub n_epochs: usize,
    /// Stop when this many epochs pass without a new best validation loss (`None`: never).
    pub patience: Option<usize>,
    pub lr: f64,
    pub optimizer_name: OptimizerName,
    pub weight_decay: f64,
    pub batch_size: usize,
    pub balanced_classes: bool,
    pub weighted_classes: bool,
    pub mixup_alpha: f64,
    pub unsup_max_weight: f64,
    pub unsup_mean_teacher: bool,
    pub model_kwargs: ModelKwargs,
    pub ssl_kwargs: SslKwargs,
    /// Fraction of labelled cells held out for the final evaluation (scNym: 10%).
    pub holdout_fraction: f64,
    /// Fraction of the rest used for model selection (scNym: 10%).
    pub model_selection_fraction: f64,
    pub seed: u64,
    /// Free text carried into the bundle (scNym's preset descriptions).
    pub description: Option<String>,
    /// CPU backends, Adadelta, no input dropout, no residual blocks, no mean teacher: the whole
    /// training step runs on the host (`scnym::host_net`; the first layer from the batch's stored
    /// values only), the same maths. `false` keeps it in burn's autodiff (for comparisons). A
    /// speed switch, not part of the model: not written to bundles (so a user's config can name it
    /// by its earlier name, `sparse_first_layer`, without meeting the preset's copy).
    #[serde(alias = "sparse_first_layer", skip_serializing)]
    #[cfg_attr(test, ts(skip))]
    pub host_network: bool,
}

impl Default for ScnymConfig {
    fn default() -> Self {
        Self {
            n_epochs: 100,
            patience: Some(40),
            lr: 1.0,
            optimizer_name: OptimizerName::Adadelta,
            weight_decay: 1e-4,
            batch_size: 256,
            balanced_classes: false,
            weighted_classes: false,
            mixup_alpha: 0.3,
            unsup_max_weight: 1.0,
            unsup_mean_teacher: false,
            model_kwargs: ModelKwargs::default(),
            ssl_kwargs: SslKwargs::default(),
            holdout_fraction: 0.1,
            model_selection_fraction: 0.1,
            seed: 0,
            description: None,
            host_network: true,
        }
    }
}

pub const PRESETS: [&str; 5] = ["default", "no_new_identity", "new_identity_discovery", "no_dan", "no_ssl"];

impl ScnymConfig {
    /// One of scNym's named configurations.
    pub fn preset(name: &str) -> Result<Self> {
        let mut c = Self::default();
        match name {
            "default" => {}
            "no_new_identity" => {
                c.description = Some("Train scNym models with MixMatch and a domain adversary, assuming no new cell types in the target data.".into())
            }
            "new_identity_discovery" => {
                c.description = Some(
                    "Train scNym models with MixMatch and a domain adversary, using pseudolabel thresholding to allow for new cell type discoveries.".into(),
                );
                c.ssl_kwargs.pseudolabel_min_confidence = 0.9;
                c.ssl_kwargs.dan_use_conf_pseudolabels = true;
            }
            "no_dan" => {
                c.description = Some("Train scNym models with MixMatch but no domain adversary.".into());
                c.ssl_kwargs.dan_max_weight = 0.0;
                c.ssl_kwargs.dan_ramp_epochs = 1;
            }
            "no_ssl" => {
                // fix: in scNym this preset still ran MixMatch (its unsup weight was never read)
                // and its description was no_dan's. Here it is plain supervised training.
                c.description = Some("Train scNym models with supervision only: no MixMatch, no domain adversary.".into());
                c.ssl_kwargs.dan_max_weight = 0.0;
                c.ssl_kwargs.dan_ramp_epochs = 1;
                c.ssl_kwargs.dan_criterion = false;
                c.ssl_kwargs.unsup_max_weight = Some(0.0);
            }
            other => {
                return Err(SclabelError::InvalidOption {
                    option: "preset".into(),
                    reason: format!("unknown preset {other:?}; choose one of {}", PRESETS.join(", ")),
                })
            }
        }
        Ok(c)
    }

    /// A copy of `preset` with the user's JSON object merged in, key by key and recursively (a
    /// partial `ssl_kwargs` changes only the keys it names). The preset itself is never changed.
    /// fix: scNym merged shallowly into its global default, changing it for later calls.
    pub fn from_preset_and_json(preset: &str, user: Option<&Value>) -> Result<Self> {
        let base = Self::preset(preset)?;
        let Some(user) = user else { return base.validated() };
        if !user.is_object() {
            return Err(SclabelError::InvalidOption { option: "config".into(), reason: "must be a JSON object".into() });
        }
        let mut merged = serde_json::to_value(&base).expect("config serialises");
        merge(&mut merged, user);
        let c: Self = serde_json::from_value(merged).map_err(|e| SclabelError::InvalidOption { option: "config".into(), reason: e.to_string() })?;
        c.validated()
    }

    /// Weight of the MixMatch loss at its maximum (the `ssl_kwargs` override wins).
    pub fn effective_unsup_max_weight(&self) -> f64 {
        self.ssl_kwargs.unsup_max_weight.unwrap_or(self.unsup_max_weight)
    }

    /// min_epochs as scNym computes it, capped at n_epochs − 1.
    pub fn min_epochs(&self, ssl: bool) -> usize {
        let mut m = self.n_epochs / 20;
        if ssl {
            m = m.max(self.ssl_kwargs.burn_in_epochs + self.ssl_kwargs.ramp_epochs / 5);
        }
        if let Some(explicit) = self.ssl_kwargs.min_epochs {
            m = explicit;
        }
        m.min(self.n_epochs.saturating_sub(1))
    }

    pub fn validated(self) -> Result<Self> {
        let bad = |option: &str, reason: &str| Err(SclabelError::InvalidOption { option: option.into(), reason: reason.into() });
        if self.n_epochs == 0 {
            return bad("n_epochs", "must be at least 1");
        }
        if self.batch_size < 2 {
            return bad("batch_size", "must be at least 2 (batch normalisation needs two cells)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", "must be ≥ 0");
        }
        if self.balanced_classes && self.weighted_classes {
            return bad("balanced_classes", "balanced_classes and weighted_classes can't both be set (as in scNym)");
        }
        if !(self.mixup_alpha >= 0.0 && self.mixup_alpha.is_finite()) {
            return bad("mixup_alpha", "must be ≥ 0");
        }
        if !(0.0..=1.0).contains(&self.ssl_kwargs.pseudolabel_min_confidence) {
            return bad("ssl_kwargs.pseudolabel_min_confidence", "must be between 0 and 1");
        }
        if !(self.ssl_kwargs.t >= 0.0 && self.ssl_kwargs.t.is_finite()) {
            return bad("ssl_kwargs.T", "must be ≥ 0");
        }
        if self.ssl_kwargs.n_augmentations == 0 {
            return bad("ssl_kwargs.n_augmentations", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.model_kwargs.init_dropout) {
            return bad("model_kwargs.init_dropout", "must be in [0, 1)");
        }
        if self.model_kwargs.n_hidden == 0 || self.model_kwargs.n_hidden_init == 0 || self.model_kwargs.n_layers == 0 {
            return bad("model_kwargs", "n_hidden, n_hidden_init and n_layers must be at least 1");
        }
        if self.model_kwargs.residual && self.model_kwargs.n_hidden != self.model_kwargs.n_hidden_init {
            return bad("model_kwargs.residual", "residual blocks need n_hidden == n_hidden_init");
        }
        for (name, f) in [("holdout_fraction", self.holdout_fraction), ("model_selection_fraction", self.model_selection_fraction)] {
            if !(0.0..0.9).contains(&f) {
                return bad(name, "must be in [0, 0.9)");
            }
        }
        if !(0.0..=1.0).contains(&self.ssl_kwargs.decay_coef) {
            return bad("ssl_kwargs.decay_coef", "must be between 0 and 1");
        }
        Ok(self)
    }
}

fn merge(base: &mut Value, user: &Value) {
    match (base, user) {
        (Value::Object(b), Value::Object(u)) => {
            for (k, v) in u {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, u) => *b = u.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_differ_as_in_scnym() {
        let d = ScnymConfig::preset("default").unwrap();
        let n = ScnymConfig::preset("new_identity_discovery").unwrap();
        assert_eq!(n.ssl_kwargs.pseudolabel_min_confidence, 0.9);
        assert!(n.ssl_kwargs.dan_use_conf_pseudolabels);
        assert_eq!(d.ssl_kwargs.pseudolabel_min_confidence, 0.0);
        let s = ScnymConfig::preset("no_ssl").unwrap();
        assert_eq!(s.effective_unsup_max_weight(), 0.0);
        assert_eq!(d.effective_unsup_max_weight(), 1.0);
        assert!(ScnymConfig::preset("nope").is_err());
    }

    #[test]
    fn user_config_merges_deeply_into_a_copy() {
        let user = serde_json::json!({"n_epochs": 7, "ssl_kwargs": {"T": 0.25}});
        let c = ScnymConfig::from_preset_and_json("new_identity_discovery", Some(&user)).unwrap();
        assert_eq!(c.n_epochs, 7);
        assert_eq!(c.ssl_kwargs.t, 0.25);
        // untouched nested keys keep the preset's values
        assert_eq!(c.ssl_kwargs.pseudolabel_min_confidence, 0.9);
        assert_eq!(c.ssl_kwargs.dan_ramp_epochs, 20);
        // the preset is unchanged for the next caller
        assert_eq!(ScnymConfig::preset("new_identity_discovery").unwrap().n_epochs, 100);
        let err = ScnymConfig::from_preset_and_json("default", Some(&serde_json::json!({"n_epoch": 3}))).unwrap_err();
        assert!(err.to_string().contains("n_epoch"), "{err}");
    }

    #[test]
    fn min_epochs_follow_scnym() {
        let mut c = ScnymConfig::default();
        assert_eq!(c.min_epochs(true), 20);
        c.ssl_kwargs.min_epochs = None;
        assert_eq!(c.min_epochs(true), 20); // max(100/20, 0 + 100/5)
        assert_eq!(c.min_epochs(false), 5);
        c.n_epochs = 10;
        assert_eq!(c.min_epochs(true), 9);
    }
}
