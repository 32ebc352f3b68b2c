#!/usr/bin/env bash
# The demo's third-party modules, bundled by esbuild into www/vendor/ (a build output, not
# committed): regl-scatterplot (WebGL scatter) for the page and umap-js for its projection worker.
# The demo imports sclabel itself unbundled from ../pkg/, exactly as the package ships.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p www/vendor
bundle() { # entry source, output file
  echo "$1" | npx --no-install esbuild --bundle --format=esm --platform=browser --minify \
    --log-level=warning --outfile="$2"
}
bundle "export { default } from 'regl-scatterplot';" www/vendor/regl-scatterplot.js
# umap-js is CommonJS: re-export its class by name so the worker can `import { UMAP }`.
bundle "export { UMAP } from 'umap-js';" www/vendor/umap-js.js
# The demo's atlas and registry (www/data/atlases*), built with the package itself.
node scripts/build-demo-atlas.mjs
