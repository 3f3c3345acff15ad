/** Messages between the worker and its spawner process (spawner.ts, spawner-process.ts), over Node's IPC channel. */
export type SpawnerRequest =
  | { t: 'spawn'; id: number; command: string; args: string[] }
  /** Asked once both handles arrived: the answer comes after the spawner has closed its copies of them. */
  | { t: 'sync'; id: number };

export type SpawnerReply =
  | { t: 'ready'; id: 0 }
  | { t: 'pid'; id: number; pid: number }
  /** Carries the child's stdin (a socket: libuv makes stdio pipes as socket pairs). */
  | { t: 'stdin'; id: number }
  /** Carries the child's stdout. */
  | { t: 'stdout'; id: number }
  | { t: 'synced'; id: number }
  | { t: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null; stderr: string }
  | { t: 'error'; id: number; message: string };
