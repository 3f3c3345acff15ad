// One onnxruntime session in its own thread. onnxruntime-node's `session.run` (and model loading) is synchronous
// on the calling thread behind a Promise (dist/backend.js: setImmediate → binding.run), so on the worker's main
// thread every inference would stall heartbeats, job-lock renewals and stream writes for its whole duration.
// Plain JS: worker threads must load without the tsx loader (vitest, bench).
import { parentPort, workerData } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';

const { file, providers, intraOpThreads } = workerData;
const base = { intraOpNumThreads: intraOpThreads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3 };
const firstLine = (err) => String(err?.message ?? err).replace(/\u001b\[[0-9;]*m/g, '').split('\n')[0].slice(0, 300);

let session;
let device;
let cudaError;
let loadError;
// Without its provider library (a CPU install: ONNXRUNTIME_NODE_INSTALL=skip) CUDA cannot load; say so ourselves
// rather than let onnxruntime print its own error for every model.
const bindingDir = path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
const cudaLibrary = path.join(bindingDir, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so');
for (const p of providers) {
  if (p === 'cuda' && !existsSync(cudaLibrary)) {
    cudaError = `${cudaLibrary} not installed (install onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12)`;
    continue;
  }
  try {
    // Severity 4 for CUDA: its library-not-found error would otherwise print a second message.
    session = await ort.InferenceSession.create(file, { ...base, executionProviders: [p], ...(p === 'cuda' ? { logSeverityLevel: 4 } : {}) });
    device = p;
    break;
  } catch (err) {
    if (p === 'cuda') cudaError = firstLine(err);
    else loadError = firstLine(err);
  }
}
const meta = (list) => list.map((m) => ({ name: m.name, isTensor: m.isTensor, type: m.type, shape: m.isTensor ? [...m.shape] : [] }));
if (!session) {
  parentPort.postMessage({ type: 'error', loadError, cudaError });
} else {
  parentPort.postMessage({
    type: 'ready', device, cudaError,
    inputMetadata: meta(session.inputMetadata), outputMetadata: meta(session.outputMetadata),
  });
}

parentPort.on('message', async (msg) => {
  if (msg.type === 'release') {
    await session?.release();
    parentPort.close();
    return;
  }
  try {
    const feeds = {};
    for (const [name, t] of Object.entries(msg.feeds)) feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
    const result = await session.run(feeds);
    const outputs = {};
    const transfer = [];
    for (const [name, t] of Object.entries(result)) {
      const data = t.data.slice(); // a copy we own, so its buffer can be transferred
      outputs[name] = { data, dims: [...t.dims] };
      transfer.push(data.buffer);
    }
    parentPort.postMessage({ id: msg.id, outputs }, transfer);
  } catch (err) {
    parentPort.postMessage({ id: msg.id, error: firstLine(err) });
  }
});
