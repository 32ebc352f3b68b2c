//! `annotateH5ad`: a user's own `.h5ad` with obs columns / obsm matrices written in
//! (`crate::io::h5ad_export`).
//!
//! The additions are a plain object, keys in order:
//! `{ obs: { name: { categorical: (string|null)[] } | { categorical_codes: { categories: string[],
//! codes: Int32Array|number[] } } | { f32: Float32Array|number[] } | { i32: Int32Array|number[] } |
//! { bool: boolean[]|Uint8Array }, … }, obsm: { name: { n_cols: number, values: Float32Array|number[] }, … } }`.
//! Typed arrays are copied in one go; anything else goes through serde (element by element).
//! Unknown keys are refused.
//!
//! Besides `obs` / `obsm`, `prediction` (a `predictScnym` result) and `audit` (an `audit` result)
//! add what scNym and Annotatability write into an AnnData, mapped by the core
//! (`Prediction::anndata_additions`, `AuditReport::anndata_additions`); `n_obs`, the file's cells,
//! lines an audit's cells up with them.
//!
//! `annotateH5adAppending` reads the file on demand and returns what to append (files h5py wrote);
//! `annotateH5ad` rebuilds a file from its bytes (the others).
use js_sys::{Array, Float32Array, Function, Int32Array, Object, Reflect, Uint32Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::audit::api::audit_additions;
use crate::audit::categories::Category;
use crate::io::h5ad_export::{self, Annotation, DenseF32, H5adAdditions, ObsValues};
use crate::scnym::predict::{prediction_additions, slots};
use crate::web::dataset::JsSource;
use crate::web::error::{invalid_option, to_js};

/// Returns the file's bytes (a `Uint8Array`) with `additions` written in and everything else as
/// it was; `name` is for error messages.
#[wasm_bindgen(js_name = annotateH5ad)]
pub fn annotate_h5ad(bytes: Vec<u8>, name: &str, additions: JsValue, n_obs: usize) -> Result<Vec<u8>, JsValue> {
    let additions = parse(&additions, n_obs)?;
    h5ad_export::annotate_h5ad(bytes, name, &additions).map_err(to_js)
}

/// The additions for the `.h5ad` read through `readAt(offset, length) -> Uint8Array` (never held
/// whole), appended after its last byte: `{ patches: [[offset, Uint8Array], …], tail: Uint8Array }`,
/// the output being the file with each patch written at its offset, then the tail (JS builds it as
/// a `Blob` of slices of the user's file). `{ rewrite: why }` for a file that can't be appended to
/// (then `annotateH5ad` rebuilds it from its bytes).
#[wasm_bindgen(js_name = annotateH5adAppending)]
pub fn annotate_h5ad_appending(length: f64, read_at: Function, name: &str, additions: JsValue, n_obs: usize) -> Result<JsValue, JsValue> {
    let additions = parse(&additions, n_obs)?;
    let out = Object::new();
    match h5ad_export::annotate_h5ad_appending(JsSource::new(length, read_at), name, &additions).map_err(to_js)? {
        Annotation::Appended(appended) => {
            let patches: Array = appended.patches.iter().map(|(at, bytes)| Array::of2(&(*at as f64).into(), &Uint8Array::from(&bytes[..]))).collect();
            Reflect::set(&out, &"patches".into(), &patches)?;
            Reflect::set(&out, &"tail".into(), &Uint8Array::from(&appended.tail[..]))?;
        }
        Annotation::Rewrite(why) => {
            Reflect::set(&out, &"rewrite".into(), &why.into())?;
        }
    }
    Ok(out.into())
}

fn parse(value: &JsValue, n_obs: usize) -> Result<H5adAdditions, JsValue> {
    let obj = object(value, "additions")?;
    let mut out = H5adAdditions::default();
    for key in keys(obj) {
        let part = Reflect::get(obj, &key.as_str().into())?;
        match key.as_str() {
            "prediction" => {
                let more = prediction(&part)?;
                out.obs.extend(more.obs);
                out.obsm.extend(more.obsm);
            }
            "audit" => out.obs.extend(audit(&part, n_obs)?.obs),
            "obs" => {
                for name in keys(object(&part, "additions.obs")?) {
                    let spec = Reflect::get(&part, &name.as_str().into())?;
                    let values = obs_values(&spec, &format!("additions.obs.{name}"))?;
                    out.obs.push((name, values));
                }
            }
            "obsm" => {
                for name in keys(object(&part, "additions.obsm")?) {
                    let spec = Reflect::get(&part, &name.as_str().into())?;
                    let m = dense(&spec, &format!("additions.obsm.{name}"))?;
                    out.obsm.push((name, m));
                }
            }
            other => return Err(invalid_option("additions", format!("unknown key '{other}' (expected obs, obsm, prediction, audit)"))),
        }
    }
    Ok(out)
}

/// A `predictScnym` result's AnnData columns (its keys are `scnym::predict::slots`' names).
fn prediction(p: &JsValue) -> Result<H5adAdditions, JsValue> {
    let what = "additions.prediction";
    object(p, what)?;
    let field = |name: &str| Reflect::get(p, &name.into());
    let labels: Vec<String> = serde_wasm_bindgen::from_value(field(slots::LABELS)?).map_err(|e| invalid_option(&format!("{what}.{}", slots::LABELS), e))?;
    let confidence = float32(&field(slots::CONFIDENCE)?, &format!("{what}.{}", slots::CONFIDENCE))?;
    let embedding = field(slots::EMBEDDING)?;
    let embedding = match embedding.is_null() || embedding.is_undefined() {
        true => None,
        false => {
            let n_cols = field("embeddingDim")?
                .as_f64()
                .filter(|n| n.fract() == 0.0 && *n > 0.0)
                .ok_or_else(|| invalid_option(&format!("{what}.embeddingDim"), "expected a positive integer"))?;
            Some(DenseF32 { n_cols: n_cols as usize, values: float32(&embedding, &format!("{what}.{}", slots::EMBEDDING))? })
        }
    };
    Ok(prediction_additions(labels, confidence, embedding))
}

/// An `audit` result's AnnData columns (see `web::audit::audit_to_js` for its keys).
fn audit(a: &JsValue, n_obs: usize) -> Result<H5adAdditions, JsValue> {
    let what = "additions.audit";
    object(a, what)?;
    let field = |name: &str| Reflect::get(a, &name.into());
    let cells = field("cells")?;
    let cells: Vec<usize> = match cells.dyn_ref::<Uint32Array>() {
        Some(c) => c.to_vec().into_iter().map(|c| c as usize).collect(),
        None => serde_wasm_bindgen::from_value(cells).map_err(|e| invalid_option(&format!("{what}.cells"), e))?,
    };
    let conf = float32(&field("conf")?, &format!("{what}.conf"))?;
    let var = float32(&field("var")?, &format!("{what}.var"))?;
    let categories: Vec<Category> = serde_wasm_bindgen::from_value(field("category")?).map_err(|e| invalid_option(&format!("{what}.category"), e))?;
    let corrected: Option<Vec<String>> =
        serde_wasm_bindgen::from_value(field("corrected_label")?).map_err(|e| invalid_option(&format!("{what}.corrected_label"), e))?;
    let audited_n_obs = field("n_obs")?.as_f64().map(|m| m as usize);
    audit_additions(n_obs, audited_n_obs, &cells, &conf, &var, &categories, corrected.as_deref()).map_err(to_js)
}

fn float32(v: &JsValue, what: &str) -> Result<Vec<f32>, JsValue> {
    match v.dyn_ref::<Float32Array>() {
        Some(a) => Ok(a.to_vec()),
        None => serde_wasm_bindgen::from_value(v.clone()).map_err(|e| invalid_option(what, e)),
    }
}

fn object<'a>(value: &'a JsValue, what: &str) -> Result<&'a Object, JsValue> {
    value.dyn_ref::<Object>().filter(|_| !value.is_null() && !Array::is_array(value)).ok_or_else(|| invalid_option(what, "expected an object"))
}

fn keys(obj: &Object) -> Vec<String> {
    Object::keys(obj).iter().filter_map(|k| k.as_string()).collect()
}

/// Refuses keys other than `allowed` (serde_wasm_bindgen ignores unknown struct fields).
fn only_keys(obj: &Object, allowed: &[&str], what: &str) -> Result<(), JsValue> {
    match keys(obj).into_iter().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid_option(what, format!("unknown key '{k}' (expected {})", allowed.join(", ")))),
        None => Ok(()),
    }
}

const KINDS: [&str; 5] = ["categorical", "categorical_codes", "f32", "i32", "bool"];

fn obs_values(spec: &JsValue, what: &str) -> Result<ObsValues, JsValue> {
    let obj = object(spec, what)?;
    let [kind] = &keys(obj)[..] else {
        return Err(invalid_option(what, format!("expected an object with one key of {}", KINDS.join(", "))));
    };
    let v = Reflect::get(obj, &kind.as_str().into())?;
    // Typed arrays are copied in one go; anything else goes through serde.
    match kind.as_str() {
        "f32" if v.is_instance_of::<Float32Array>() => return Ok(ObsValues::F32(Float32Array::from(v).to_vec())),
        "i32" if v.is_instance_of::<Int32Array>() => return Ok(ObsValues::I32(Int32Array::from(v).to_vec())),
        "bool" if v.is_instance_of::<Uint8Array>() => return Ok(ObsValues::Bool(Uint8Array::from(v).to_vec().into_iter().map(|b| b != 0).collect())),
        "categorical_codes" => {
            let what = format!("{what}.categorical_codes");
            only_keys(object(&v, &what)?, &["categories", "codes"], &what)?;
            let codes = Reflect::get(&v, &"codes".into())?;
            if codes.is_instance_of::<Int32Array>() {
                let categories = Reflect::get(&v, &"categories".into())?;
                let categories: Vec<String> = serde_wasm_bindgen::from_value(categories).map_err(|e| invalid_option(&format!("{what}.categories"), e))?;
                return Ok(ObsValues::CategoricalCodes { categories, codes: Int32Array::from(codes).to_vec() });
            }
        }
        _ => {}
    }
    serde_wasm_bindgen::from_value(spec.clone()).map_err(|e| invalid_option(what, e))
}

fn dense(spec: &JsValue, what: &str) -> Result<DenseF32, JsValue> {
    let obj = object(spec, what)?;
    only_keys(obj, &["n_cols", "values"], what)?;
    let values = Reflect::get(obj, &"values".into())?;
    if values.is_instance_of::<Float32Array>() {
        let n_cols = Reflect::get(obj, &"n_cols".into())?
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u32::MAX as f64)
            .ok_or_else(|| invalid_option(&format!("{what}.n_cols"), "expected a non-negative integer"))?;
        return Ok(DenseF32 { n_cols: n_cols as usize, values: Float32Array::from(values).to_vec() });
    }
    serde_wasm_bindgen::from_value(spec.clone()).map_err(|e| invalid_option(what, e))
}
