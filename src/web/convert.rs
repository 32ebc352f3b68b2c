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
    let json: serde_json::Value = serde_wasm_bindgen::from_value(value).map_err(|e| invalid_option(name, e))?;
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
