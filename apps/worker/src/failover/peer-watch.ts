import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { liveWorkers, workerConnectionName, type RedisKeys, type WorkerInfo } from '@chorus/shared';

/**
 * After this worker's own connection (re)connects, peers may still be reconnecting (a Redis restart or failover
 * drops every connection): nobody is declared dead until ours has been up this long.
 */
const RECONNECT_GRACE_MS = 2000;
/** Looks in a row that must miss a peer's connections: one CLIENT LIST can fall between a reconnect's close and open. */
const MISSES_TO_DECLARE_DEAD = 2;

export interface PeerWatchOptions {
  redis: Redis;
  keys: RedisKeys;
  /** REDIS_PREFIX: part of every worker's connection name. */
  prefix: string;
  selfId: string;
  pollMs: number;
  logger: Logger;
  /** Called once per peer found dead (a live heartbeat, but none of its connections left). */
  onDead(peer: WorkerInfo): Promise<void>;
}

/**
 * Finds dead peers fast. A worker process that dies (SIGKILL, OOM kill, a crash) keeps its heartbeat for up to
 * three heartbeat intervals and its job locks for up to LOCK_DURATION_MS, but Redis closes its connections at once.
 * So every FAILOVER_POLL_MS this lists Redis's clients (one CLIENT LIST) and the live workers; a peer whose
 * heartbeat is live and whose named connections (workerConnectionName) are missing from two looks in a row is dead.
 *
 * This does not depend on the peer's event loop: a worker busy on CPU keeps its sockets open, so load cannot make
 * it look dead (shortening the lock duration instead would). A host that vanishes without closing its sockets is
 * not seen here; its jobs come back through lock expiry and BullMQ's stalled check, as before.
 */
export class PeerWatch {
  readonly #o: PeerWatchOptions;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #readyAt = Date.now();
  readonly #misses = new Map<string, number>();
  /** Peers handed back already (kept while their heartbeat lives, so each is handled once). */
  readonly #handled = new Set<string>();
  #warned = false;

  constructor(options: PeerWatchOptions) {
    this.#o = options;
    options.redis.on('ready', () => (this.#readyAt = Date.now()));
  }

  start(): void {
    if (this.#o.pollMs <= 0) return;
    const loop = () => {
      if (this.#stopped) return;
      this.#poll()
        .catch((err: Error) => {
          if (/unknown command|NOPERM|no permissions/i.test(err.message)) {
            // A managed Redis that forbids CLIENT LIST: stall recovery alone, said once.
            this.#o.logger.warn({ err: err.message }, 'CLIENT LIST refused; dead workers are found by lock expiry only');
            this.#stopped = true;
          } else if (!this.#warned) {
            this.#warned = true;
            this.#o.logger.warn({ err: err.message }, 'peer watch failed; retrying');
          }
        })
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(loop, this.#o.pollMs).unref();
        });
    };
    this.#timer = setTimeout(loop, this.#o.pollMs).unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #poll(): Promise<void> {
    const { redis, keys, prefix, selfId } = this.#o;
    if (redis.status !== 'ready' || Date.now() - this.#readyAt < RECONNECT_GRACE_MS) return;
    // Peers first: a peer that registers between the two calls then has its connection in the list already.
    const peers = await liveWorkers(redis, keys);
    const list = (await redis.client('LIST')) as string;
    this.#warned = false;
    const names = new Set<string>();
    for (const m of list.matchAll(/ name=(\S+)/g)) names.add(m[1]!);
    const live = new Set(peers.map((p) => p.id));
    for (const id of this.#handled) if (!live.has(id)) this.#handled.delete(id);
    for (const id of this.#misses.keys()) if (!live.has(id)) this.#misses.delete(id);
    for (const peer of peers) {
      if (peer.id === selfId || this.#handled.has(peer.id)) continue;
      if (names.has(workerConnectionName(prefix, peer.id))) {
        this.#misses.delete(peer.id);
        continue;
      }
      const misses = (this.#misses.get(peer.id) ?? 0) + 1;
      this.#misses.set(peer.id, misses);
      if (misses < MISSES_TO_DECLARE_DEAD) continue;
      this.#handled.add(peer.id);
      this.#misses.delete(peer.id);
      this.#o.logger.warn({ peer: peer.id, pid: peer.pid, host: peer.host }, 'worker connections gone; handing its jobs back');
      this.#o.onDead(peer).catch((err: Error) =>
        this.#o.logger.error({ peer: peer.id, err: err.message }, 'could not hand a dead worker\'s jobs back'),
      );
    }
  }
}
