// Stands in for Node's worker_threads in the browser bundle (esbuild --alias): unzipit imports it
// only to inflate in worker threads, which readZarr never asks for.
export const Worker = undefined;
