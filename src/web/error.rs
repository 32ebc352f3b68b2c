//! The only place a `SclabelError` becomes a JS `Error` (with a stable `.code`, and its fields as
//! `.details`).
use wasm_bindgen::JsValue;

use crate::error::SclabelError;

pub fn to_js(e: SclabelError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    if let Ok(details) = crate::web::convert::to_js(&e.details()) {
        let _ = js_sys::Reflect::set(&err, &"details".into(), &details);
    }
    err.into()
}

/// For values coming from JS that don't parse as the expected options.
pub fn invalid_option(option: &str, e: impl std::fmt::Display) -> JsValue {
    to_js(SclabelError::InvalidOption { option: option.into(), reason: e.to_string() })
}

/// Every `error.code` sclabel raises, core and JS layer, as `[code, meaning]` pairs.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> Vec<js_sys::Array> {
    crate::error::ERROR_CODES.iter().map(|(code, meaning)| js_sys::Array::of2(&(*code).into(), &(*meaning).into())).collect()
}
