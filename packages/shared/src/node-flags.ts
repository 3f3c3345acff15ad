/**
 * Node (V8) flags the worker process starts with, wherever it starts: `npm start` (scripts/launch.ts), `npm run
 * worker`, the worker images (apps/worker/Dockerfile), the benchmarks and the tests. The places that cannot import
 * this list (package.json scripts, the Dockerfile) are held to it by test/compose-config.test.ts.
 *
 * --initial-old-space-size=64: V8 sizes the old generation's limit from the live heap (~26 MB in a worker), and that
 * close to the limit it started a full mark-compact about once a second under load: 36 in a bench/admission.ts run,
 * each a 5–20 ms pause plus incremental steps of up to ~30 ms on the main thread, the thread that moves every job's
 * audio and starts each new one. With the limit starting at 64 MB the same run had 1; the heap's committed size went
 * from ~64 to ~69 MB. Not settable through NODE_OPTIONS, hence a command-line flag.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];
