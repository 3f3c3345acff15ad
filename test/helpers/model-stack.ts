import { rmSync } from 'node:fs';
import { generateModelsDir } from './onnx-models.ts';
import { startStack, type Stack } from './stack.ts';

/**
 * A real stack (API + one worker process) whose worker serves `engines` (e.g. `espeak,piper,kokoro`) from a freshly
 * generated MODELS_DIR; its `stop()` removes the models too.
 */
export async function startModelStack(redisUrl: string, engines: string): Promise<Stack> {
  const modelsDir = generateModelsDir().dir;
  const removeModels = () => rmSync(modelsDir, { recursive: true, force: true });
  let stack: Stack;
  try {
    stack = await startStack({ redisUrl, workerEnv: { ENGINES: engines, MODELS_DIR: modelsDir, ORT_INTRA_OP_THREADS: '1' } });
  } catch (err) {
    removeModels();
    throw err;
  }
  const stop = stack.stop.bind(stack);
  stack.stop = async () => {
    await stop();
    removeModels();
  };
  return stack;
}
