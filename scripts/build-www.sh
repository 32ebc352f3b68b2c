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
# The Vitessce page's modules (www/vitessce.html): React, Vitessce's unbundled component and plugin
# API (@vitessce/all), its hooks (@vitessce/vit-s) and zarrita's zip store, from one build with
# shared chunks, so all share one React and one vit-s (whose contexts the sclabel view's hooks
# read). Vitessce's optional three.js peers stay out: it imports them only for its 3-D views.
rm -rf www/vendor/vitessce
npx --no-install esbuild scripts/vitessce-vendor/*.js --bundle --format=esm --platform=browser --splitting \
  --minify --log-level=warning --outdir=www/vendor/vitessce --define:process.env.NODE_ENV='"production"' \
  --alias:worker_threads=./src/js/vendor/no-worker-threads.js '--external:@react-three/*' --external:three
# The demo's CellTypist model: the fixture trained with PyPI's celltypist on PBMC 3k's labels.
mkdir -p www/data
cp tests/fixtures/celltypist/pbmc3k_lr.pkl www/data/celltypist_pbmc3k.pkl
# The demo's atlas and registry (www/data/atlases*), built with the package itself.
node scripts/build-demo-atlas.mjs
# The Vitessce page's example AnnData-Zarr (www/data/pbmc3k.zarr), also with the package.
node scripts/build-vitessce-example.mjs
