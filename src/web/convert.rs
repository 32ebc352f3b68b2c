//! serde between JS values and core types: snake_case plain objects, exactly the Rust serde form.
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};

use crate::web::error::invalid_option;

/// Parses options; `undefined` / `null` give the defaults. Unknown keys are rejected by the
/// core types (`deny_unknown_fields`) — which only works through serde_json: serde_wasm_bindgen
/// reads a JS object by asking for each known field, so it never sees a misspelt one.
pub fn options<T: DeserializeOwned + Default>(value: JsValue, name: &str) -> Result<T, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    // serde reads NaN and ±Infinity as null ("invalid type: null, expected f64"): name them first.
    if let Some(path) = non_finite_number(&value, name, 0) {
        return Err(invalid_option(&path, "is not a finite number (NaN or ±Infinity); give a number"));
    }
    let mut json: serde_json::Value = serde_wasm_bindgen::from_value(value.clone()).map_err(|e| invalid_option(name, e))?;
    drop_undefined(&mut json, &value, 0);
    serde_json::from_value(json).map_err(|e| invalid_option(name, e))
}

/// Plain JS objects (not Maps); numeric vectors stay arrays.
pub fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_maps_as_objects(true);
    value.serialize(&serializer).map_err(|e| JsValue::from_str(&format!("could not convert a result to JS: {e}")))
}

/// `obj[key] = value` on a result object.
pub fn set(obj: &js_sys::Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsValue> {
    js_sys::Reflect::set(obj, &key.into(), &value.into()).map(|_| ())
}

/// The path (`options.config.lr`) of the first NaN / ±Infinity in a plain options object, if any.
/// Typed arrays and deep nesting are not searched (options are small, shallow objects).
fn non_finite_number(value: &JsValue, path: &str, depth: usize) -> Option<String> {
    if let Some(x) = value.as_f64() {
        return (!x.is_finite()).then(|| path.to_string());
    }
    if depth > 8 || !value.is_object() || value.is_function() || js_sys::ArrayBuffer::is_view(value) {
        return None;
    }
    if let Some(items) = value.dyn_ref::<js_sys::Array>() {
        return items.iter().enumerate().find_map(|(i, v)| non_finite_number(&v, &format!("{path}[{i}]"), depth + 1));
    }
    js_sys::Object::entries(value.unchecked_ref()).iter().find_map(|entry| {
        let pair: js_sys::Array = entry.unchecked_into();
        let key = pair.get(0).as_string().unwrap_or_default();
        non_finite_number(&pair.get(1), &format!("{path}.{key}"), depth + 1)
    })
}

/// `{ key: undefined }` means the key is absent in JS, but serde reads it as null: such keys are
/// removed, at any depth of plain objects.
fn drop_undefined(json: &mut serde_json::Value, js: &JsValue, depth: usize) {
    let serde_json::Value::Object(map) = json else { return };
    if depth > 8 {
        return;
    }
    map.retain(|k, v| {
        let field = js_sys::Reflect::get(js, &k.into()).unwrap_or(JsValue::UNDEFINED);
        if field.is_undefined() {
            return false;
        }
        drop_undefined(v, &field, depth + 1);
        true
    });
}
