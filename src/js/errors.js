// Errors crossing the JS API carry a stable `.code`, like the ones the wasm core throws.
// `details`: the core's fields of the error (file, column, gene, cell, row, option …), as data.
export function fail(code, message, details) {
  return Object.assign(new Error(message), { code }, details ? { details } : {});
}
