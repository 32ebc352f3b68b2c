// Errors crossing the JS API carry a stable `.code`, like the ones the wasm core throws.
export function fail(code, message) {
  return Object.assign(new Error(message), { code });
}
