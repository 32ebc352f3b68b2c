//! serde between JS values and core types: snake_case plain objects, exactly the Rust serde form.
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::JsValue;

use crate::web::error::invalid_option;

/// Parses options; `undefined` / `null` give the defaults. Unknown keys are rejected by the
/// core types (`deny_unknown_fields`) — which only works through serde_json: serde_wasm_bindgen
/// reads a JS object by asking for each known field, so it never sees a misspelt one.
pub fn options<T: DeserializeOwned + Default>(value: JsValue, name: &str) -> Result<T, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    let mut json: serde_json::Value = serde_wasm_bindgen::from_value(value.clone()).map_err(|e| invalid_option(name, e))?;
    if let Err(path) = as_written(&mut json, &value, name, 0) {
        return Err(invalid_option(&path, "is not a finite number (NaN or ±Infinity); give a number"));
    }
    serde_json::from_value(json).map_err(|e| invalid_option(name, e))
}

/// Plain JS objects (not Maps); numeric vectors stay arrays; `None` is `null`, as the generated
/// TypeScript types declare it (`T | null`), not a missing key.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true).serialize_missing_as_null(true);
    value.serialize(&serializer).map_err(|e| JsValue::from_str(&format!("could not convert a result to JS: {e}")))
}

/// Per-cell names (labels) as a JS array of strings. A data set's labels are a few distinct names
/// repeated: each distinct one crosses into JS once, where serde would decode every cell's string
/// (the bulk of a 100k-cell prediction's conversion).
pub fn names_to_js<S: AsRef<str>>(values: &[S]) -> JsValue {
    let mut interned: std::collections::HashMap<&str, JsValue> = std::collections::HashMap::new();
    let out = js_sys::Array::new_with_length(values.len() as u32);
    for (i, v) in values.iter().enumerate() {
        let v = v.as_ref();
        out.set(i as u32, interned.entry(v).or_insert_with(|| JsValue::from_str(v)).clone());
    }
    out.into()
}

/// `obj[key] = value` on a result object.
pub fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsValue> {
    js_sys::Reflect::set(obj, &key.into(), &value.into()).map(|_| ())
}

/// Rows `rows` of a CSR matrix (all of them: `0..x.n_rows`) as `{ nObs, nVars, indptr:
/// Float64Array, indices: Uint32Array, data: Float32Array }`, copied straight from the matrix's
/// slices (a band of rows is contiguous in CSR).
pub fn csr_to_js(x: &crate::data::matrix::CsrMatrix, rows: std::ops::Range<usize>) -> Result<js_sys::Object, JsValue> {
    let out = js_sys::Object::new();
    let (lo, hi) = (x.indptr[rows.start] as usize, x.indptr[rows.end] as usize);
    let indptr: Vec<f64> = x.indptr[rows.start..=rows.end].iter().map(|&p| (p as usize - lo) as f64).collect();
    set(&out, "nObs", rows.len() as u32)?;
    set(&out, "nVars", x.n_cols as u32)?;
    set(&out, "indptr", js_sys::Float64Array::from(indptr.as_slice()))?;
    set(&out, "indices", js_sys::Uint32Array::from(&x.indices[lo..hi]))?;
    set(&out, "data", js_sys::Float32Array::from(&x.data[lo..hi]))?;
    Ok(out)
}

/// Mends what serde_wasm_bindgen reads differently from what the caller wrote, walking the
/// converted `json` beside the JS `js`: `{ key: undefined }` means the key is absent, not null,
/// so it is removed; a null that was NaN or ±Infinity is refused, naming its path
/// (`options.train.lr`; serde alone says "invalid type: null, expected f64"). Only
/// nulls and containers are looked up in JS, so numeric arrays cost nothing.
fn as_written(json: &mut serde_json::Value, js: &JsValue, path: &str, depth: usize) -> Result<(), String> {
    use serde_json::Value;
    let nested = |v: &Value| matches!(v, Value::Null | Value::Object(_) | Value::Array(_));
    match json {
        Value::Null if js.as_f64().is_some_and(|x| !x.is_finite()) => Err(path.to_string()),
        Value::Object(map) if depth <= 8 => {
            let mut refused = Ok(());
            map.retain(|k, v| {
                let field = js_sys::Reflect::get(js, &k.into()).unwrap_or(JsValue::UNDEFINED);
                if field.is_undefined() {
                    return false;
                }
                if refused.is_ok() && nested(v) {
                    refused = as_written(v, &field, &format!("{path}.{k}"), depth + 1);
                }
                true
            });
            refused
        }
        Value::Array(items) if depth <= 8 => items.iter_mut().enumerate().filter(|(_, v)| nested(v)).try_for_each(|(i, v)| {
            let item = js_sys::Reflect::get_u32(js, i as u32).unwrap_or(JsValue::UNDEFINED);
            as_written(v, &item, &format!("{path}[{i}]"), depth + 1)
        }),
        _ => Ok(()),
    }
}
