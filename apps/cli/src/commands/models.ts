import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { loadCliConfig } from '@chorus/shared/config';
import { NAME_HELP } from '../models/catalog.ts';
import type { ProgressMode } from '../progress.ts';

/*
 * `chorus models list|pull|verify|rm`: their arguments and flags. What they do is in actions/models.ts, loaded when
 * one of them runs.
 */

const actions = () => import('../actions/models.ts');

interface GroupOpts {
  modelsDir?: string;
}

function modelsDir(cmd: Command): string {
  const { modelsDir } = cmd.optsWithGlobals<GroupOpts>();
  return resolve(modelsDir ?? loadCliConfig().modelsDir);
}

function nonNegativeInt(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError('expected a whole number');
  return Number(v);
}

export function modelsCommand(): Command {
  const models = new Command('models')
    .description('manage the local model store the neural engines load (Piper voices, Kokoro)')
    .option('--models-dir <dir>', 'model store (default: $MODELS_DIR or ./models)');

  models
    .command('list')
    .description('what is installed, with sizes and sha256 checksums')
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => (await actions()).list(modelsDir(cmd), opts.json === true));

  models
    .command('pull')
    .description(`download from the Hugging Face hub ($HF_ENDPOINT, $HF_TOKEN): ${NAME_HELP}`)
    .argument('<name>', NAME_HELP)
    .option('--revision <rev>', 'branch, tag or commit on the hub', 'main')
    .option('--retries <n>', 'further tries per file after a dropped connection', nonNegativeInt, 5)
    .addOption(new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'plain']).default('auto'))
    .action(async (name: string, opts: { revision: string; retries: number; progress: ProgressMode }, cmd: Command) =>
      (await actions()).pull(modelsDir(cmd), name, opts),
    );

  models
    .command('verify')
    .description("recompute every file's sha256 and compare with the manifest")
    .option('--json', 'machine-readable output')
    .action(async (opts: { json?: boolean }, cmd: Command) => (await actions()).verify(modelsDir(cmd), opts.json === true));

  models
    .command('rm')
    .description(`remove a model's files and manifest entries: ${NAME_HELP}`)
    .argument('<name>', NAME_HELP)
    .action(async (name: string, _opts: unknown, cmd: Command) => (await actions()).remove(modelsDir(cmd), name));

  return models;
}
