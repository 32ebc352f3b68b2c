//! The TypeScript types of the options and reports the core hands to JS, generated from their
//! serde types by ts-rs into `src/js/generated.d.ts` (which `index.d.ts` re-exports), so that the
//! published types cannot drift from what Rust takes and returns. The test fails when the file is
//! stale; `SCLABEL_WRITE_TYPES=1 cargo test --features ndarray,cli --lib typescript` rewrites it.
use ts_rs::{Config, TS};

use crate::atlas::{build::AtlasOptions, matrix::ValueEncoding, open::AtlasFineTuneOptions};
use crate::audit::api::{AuditOptions, CutoffRule};
use crate::audit::categories::{Category, Cutoffs, EasyThresholds};
use crate::audit::genes::GeneScoreOptions;
use crate::backend::{Backend, BackendInfo, BackendRequest, Executor};
use crate::celltypist::CelltypistOptions;
use crate::cluster::OverClusterOptions;
use crate::data::{
    align::GeneOverlap, hvg::HvgFlavor, hvg::HvgOptions, normalize::Normalization, normalize::NormalizationReport, normalize::TargetScale, sampler::Sampling,
};
use crate::scnym::api::{PredictReport, TransferOptions};
use crate::scnym::config::{Augmentation, ModelKwargs, OptimizerName, ScnymConfig, SslKwargs, UnsupCriterion, PRESETS};
use crate::scnym::{explain::ExplainOptions, predict::PredictOptions};
use crate::train::classifier::{EpochStats, OptimizerConfig, TrainOptions};
use crate::train::holdout::{HoldoutOptions, HoldoutReport};
use crate::train::progress::{Phase, Progress};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/js/generated.d.ts");

/// Every declaration, dependencies before the types that use them.
fn generated() -> String {
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the core's serde types by ts-rs (src/typescript.rs); do not edit.\n\
         // Options are declared resolved (every field present, as results echo them); index.d.ts\n\
         // takes them as `Options<T>`, every field optional.\n\n",
    );
    macro_rules! declare {
        ($($t:ty),* $(,)?) => {$(
            if let Some(docs) = <$t as TS>::docs() {
                out.push_str(&docs);
            }
            out.push_str("export ");
            out.push_str(&<$t as TS>::decl(&cfg));
            out.push_str("\n\n");
        )*};
    }
    let presets = PRESETS.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(" | ");
    out.push_str(&format!("/**\n * scNym's presets (`crate::scnym::config::PRESETS`).\n */\nexport type ScnymPreset = {presets};\n\n"));
    declare!(
        BackendRequest,
        Backend,
        BackendInfo,
        Executor,
        Phase,
        Progress,
        TargetScale,
        Normalization,
        NormalizationReport,
        GeneOverlap,
        Sampling,
        OptimizerConfig,
        TrainOptions,
        EpochStats,
        HoldoutOptions,
        HoldoutReport,
        OptimizerName,
        Augmentation,
        UnsupCriterion,
        ModelKwargs,
        SslKwargs,
        ScnymConfig,
        TransferOptions,
        PredictOptions,
        PredictReport,
        OverClusterOptions,
        CelltypistOptions,
        ExplainOptions,
        ValueEncoding,
        AtlasOptions,
        AtlasFineTuneOptions,
        HvgFlavor,
        HvgOptions,
        CutoffRule,
        EasyThresholds,
        Cutoffs,
        Category,
        GeneScoreOptions,
        AuditOptions,
    );
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn typescript_types_are_current() {
    let fresh = generated();
    if std::env::var_os("SCLABEL_WRITE_TYPES").is_some() {
        std::fs::write(PATH, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == fresh,
        "src/js/generated.d.ts is not what the core's types generate: run `SCLABEL_WRITE_TYPES=1 cargo test --features ndarray,cli --lib typescript` and commit it"
    );
}
