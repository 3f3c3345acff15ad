import { createRequire } from 'node:module';
import { Command, CommanderError } from 'commander';
import { ConfigError } from '@chorus/shared/config';
import { batchCommand } from './commands/batch.ts';
import { modelsCommand } from './commands/models.ts';
import { speakCommand } from './commands/speak.ts';
import { CliError } from './errors.ts';

/*
 * `chorus`, the command line of SPEC §8. One module per command group under commands/ (models, speak, batch)
 * declares its subcommands and flags; what they do is in actions/, loaded only by the subcommand that runs (a
 * `chorus models …` run never loads the OpenAI SDK: every run starts a fresh node + tsx process).
 * Failures print one line on stderr and exit non-zero.
 */

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

const program = new Command('chorus')
  .description('Chorus text-to-speech gateway: command line')
  .version(version)
  .exitOverride()
  .addCommand(modelsCommand())
  .addCommand(speakCommand())
  .addCommand(batchCommand());

// Ctrl-C during a download: the partial file stays for the next pull to resume; give the cursor back (the bar hid it).
process.on('SIGINT', () => {
  if (process.stderr.isTTY) process.stderr.write('\x1b[?25h\n');
  process.stderr.write('chorus: interrupted\n');
  process.exit(130);
});

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // commander already printed its one line (or the help / version text).
    process.exitCode = err.exitCode;
  } else if (err instanceof CliError) {
    process.stderr.write(`chorus: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else if (err instanceof ConfigError) {
    const [head, ...issues] = err.message.split('\n');
    process.stderr.write(`chorus: ${head} ${issues.map((l) => l.trim()).join('; ')}\n`);
    process.exitCode = 1;
  } else {
    // The OpenAI SDK's errors (HTTP status + envelope, connection failures). api-client.ts is loaded already when an
    // SDK call threw; otherwise it is loaded here, on this failure path only, to find that the error is not the SDK's.
    const apiLine = (await import('./api-client.ts')).apiErrorLine(err);
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`chorus: ${apiLine ?? e?.message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
