import { Command, InvalidArgumentError, Option } from 'commander';
import { addApiOptions, type ApiOpts } from '../api-options.ts';
import type { ProgressMode } from '../progress.ts';

/*
 * `chorus batch`: its subcommands, arguments and flags. What they do is in actions/batch.ts, loaded (with the OpenAI
 * SDK) when one of them runs.
 */

type Actions = typeof import('../actions/batch.ts');
type ActionName = 'submit' | 'status' | 'list' | 'cancel' | 'download';

/** A subcommand's action: loads actions/batch.ts and hands it commander's arguments as they are. */
function run<K extends ActionName>(name: K) {
  return async (...args: Parameters<Actions[K]>): Promise<void> => {
    const action = (await import('../actions/batch.ts'))[name] as (...a: Parameters<Actions[K]>) => Promise<void>;
    await action(...args);
  };
}

export interface CommonOpts extends ApiOpts {
  progress: ProgressMode;
}

function positiveInt(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return Number(v);
}

function seconds(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0.1) throw new InvalidArgumentError('expected seconds ≥ 0.1');
  return n;
}

function metadataArg(v: string, prev: Record<string, string> = {}): Record<string, string> {
  const eq = v.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('expected key=value');
  return { ...prev, [v.slice(0, eq)]: v.slice(eq + 1) };
}

const progressOption = () => new Option('--progress <mode>', 'progress display').choices(['auto', 'bar', 'plain']).default('auto');

export function batchCommand(): Command {
  const batch = new Command('batch').description('batch synthesis: submit a JSONL file of speech requests, follow it, fetch the audio');

  batch.addCommand(
    addApiOptions(
      new Command('submit')
        .description('upload FILE.jsonl and create a batch; prints its id')
        .argument('<file>', 'JSONL, one {custom_id, method, url, body} per line')
        .option('--wait', 'follow the batch with a progress display until it ends, then summarise')
        .option('-o, --output <dir>', 'when it ends, download the results into DIR (implies --wait)')
        .option('--metadata <key=value>', 'batch metadata (repeatable)', metadataArg)
        .option('--completion-window <duration>', "how long the batch may run before it expires ('24h', or e.g. '30m')", '24h')
        .option('--poll <seconds>', 'seconds between status checks while waiting', seconds, 1)
        .addOption(progressOption()),
    ).action(run('submit')),
  );
  batch.addCommand(
    addApiOptions(
      new Command('status').description('one line about a batch (or --json: the batch object)').argument('<id>').option('--json', 'the batch object as JSON'),
    ).action(run('status')),
  );
  batch.addCommand(
    addApiOptions(
      new Command('list')
        .description('your batches, newest first')
        .option('--limit <n>', 'batches per page (1 to 100)', positiveInt, 20)
        .option('--after <id>', 'the page after this batch id')
        .option('--json', 'the page as JSON'),
    ).action(run('list')),
  );
  batch.addCommand(addApiOptions(new Command('cancel').description('cancel a batch (queued items are dropped)').argument('<id>')).action(run('cancel')));
  batch.addCommand(
    addApiOptions(
      new Command('download')
        .description('write output.jsonl, errors.jsonl and each item\'s audio as <custom_id>.<ext> into DIR')
        .argument('<id>')
        .requiredOption('-o, --output <dir>', 'directory (created if missing)')
        .option('--archive', 'fetch the zip of all audio (<id>.zip) instead')
        .addOption(progressOption()),
    ).action(run('download')),
  );
  return batch;
}
