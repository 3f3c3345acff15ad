import type { ChildProcess } from 'node:child_process';

/**
 * Every process a test starts (API, worker, redis-server, sentinel) dies with the test process, even when a
 * failing test never reached its clean-up (a timed-out hook): otherwise it lingers, holding ports and
 * reconnecting to Redis forever.
 */
const spawned = new Set<ChildProcess>();

function killSpawned() {
  for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
process.once('exit', killSpawned);
// vitest ends its test processes with SIGTERM, which skips 'exit' handlers.
process.once('SIGTERM', () => {
  killSpawned();
  process.exit(143);
});

export function track<T extends ChildProcess>(child: T): T {
  spawned.add(child);
  child.once('exit', () => spawned.delete(child));
  return child;
}
