import type { RedisClient } from '@chorus/shared';
import type { Logger } from 'pino';
import { isCluster, primaries, WorkerInfo, workerConnectionName, type RedisKeys } from '@chorus/shared';

/**
 * After this worker's own connection (re)connects, peers may still be reconnecting (a Redis restart or failover
 * drops every connection): nobody is declared dead until ours has been up this long.
 */
const RECONNECT_GRACE_MS = 2000;
/**
 * On a Cluster, a node failing or the slot map changing (a failover) starts the same grace, a little longer: each
 * peer learns the new primary from its own slot refresh (every second), up to one refresh after this process.
 */
const CLUSTER_CHANGE_GRACE_MS = 3000;
/**
 * Looks in a row that must miss a peer's connections (one CLIENT LIST can fall between a reconnect's close and
 * open); after a first miss the next look comes CONFIRM_MS later instead of a whole FAILOVER_POLL_MS.
 */
const MISSES_TO_DECLARE_DEAD = 2;
const CONFIRM_MS = 50;
/**
 * A peer stays watched this long after its heartbeat was last seen: a heartbeat TTL shorter than a slow look
 * (HEARTBEAT_INTERVAL_MS 500 gives 1.5 s) must not let a dead peer slip out of sight before it is handled.
 */
const REMEMBER_MS = 60_000;

async function workerInfos(redis: RedisClient, keys: RedisKeys, ids: string[]): Promise<WorkerInfo[]> {
  if (ids.length === 0) return [];
  const out: WorkerInfo[] = [];
  for (const raw of await redis.mget(ids.map((id) => keys.worker(id)))) {
    const parsed = raw ? WorkerInfo.safeParse(JSON.parse(raw)) : undefined;
    if (parsed?.success) out.push(parsed.data);
  }
  return out;
}

export interface PeerWatchOptions {
  redis: RedisClient;
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
 * So every FAILOVER_POLL_MS this lists Redis's clients (CLIENT LIST; on a Cluster, of every primary) and the live workers; a peer seen in the
 * registry lately whose named connections (workerConnectionName) are missing from two looks in a row is gone.
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
  /** Peers seen in the registry, with when they were last seen there. */
  readonly #known = new Map<string, { peer: WorkerInfo; seenAt: number }>();
  /** Peers handed back already (each is handled once). */
  readonly #handled = new Set<string>();
  #warned = false;

  constructor(options: PeerWatchOptions) {
    this.#o = options;
    options.redis.on('ready', () => (this.#readyAt = Date.now()));
    if (isCluster(options.redis)) {
      const changed = () => (this.#readyAt = Date.now() + CLUSTER_CHANGE_GRACE_MS - RECONNECT_GRACE_MS);
      for (const event of ['+node', '-node', 'node error']) options.redis.on(event, changed);
    }
  }

  start(): void {
    if (this.#o.pollMs <= 0) return;
    const loop = () => {
      if (this.#stopped) return;
      let suspects = false;
      this.#poll()
        .then((s) => (suspects = s))
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
          if (!this.#stopped) this.#timer = setTimeout(loop, suspects ? Math.min(CONFIRM_MS, this.#o.pollMs) : this.#o.pollMs).unref();
        });
    };
    this.#timer = setTimeout(loop, this.#o.pollMs).unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  /** The live worker ids (the registry). */
  async #registry(): Promise<string[]> {
    return this.#o.redis.zrangebyscore(this.#o.keys.workers(), Date.now(), '+inf');
  }

  /**
   * The live worker ids and the CLIENT LIST of every primary. The registry first, so a peer that registers meanwhile
   * has its connection in the lists already. One Redis: one round trip for both (a busy event loop makes every
   * await cost). A Cluster: a worker's connections are spread over the nodes it talks to (the queue's slot, the
   * registry's, its streams'), so every primary is listed and a peer is alive if any of them has a connection
   * with its name. A primary that does not answer fails the look (none is declared dead on part of the picture).
   */
  async #registryAndClients(): Promise<[string[], string[]]> {
    const { redis, keys } = this.#o;
    if (isCluster(redis)) {
      const ids = await this.#registry();
      const nodes = primaries(redis);
      if (nodes.length === 0) throw new Error('no cluster primaries known');
      return [ids, await Promise.all(nodes.map((n) => n.client('LIST') as Promise<string>))];
    }
    const [[idsErr, ids], [listErr, list]] = (await redis.pipeline().zrangebyscore(keys.workers(), Date.now(), '+inf')
      .client('LIST').exec()) as [[Error | null, string[]], [Error | null, string]];
    if (idsErr || listErr) throw (idsErr ?? listErr)!;
    return [ids, [list]];
  }

  /** Remembers the registered peers (with their current lock owners); forgets those unseen for REMEMBER_MS. */
  async #learn(ids: string[]): Promise<WorkerInfo[]> {
    // The infos every time: a peer's lock owners change when one of its rescue workers comes or goes.
    const peers = await workerInfos(this.#o.redis, this.#o.keys, ids);
    const now = Date.now();
    for (const peer of peers) this.#known.set(peer.id, { peer, seenAt: now });
    for (const [id, k] of this.#known) {
      if (now - k.seenAt <= REMEMBER_MS) continue;
      this.#known.delete(id);
      this.#handled.delete(id);
      this.#misses.delete(id);
    }
    return peers;
  }

  /** One look; true when a peer missed it (the next look comes sooner). */
  async #poll(): Promise<boolean> {
    const { redis, prefix, selfId } = this.#o;
    if (redis.status !== 'ready') return false;
    if (Date.now() - this.#readyAt < RECONNECT_GRACE_MS) {
      // Nobody is declared dead during the grace, but peers are learned: a peer that dies now may have its heartbeat
      // expire before the grace ends (1.5 s at HEARTBEAT_INTERVAL_MS 500), and one never seen is never handed back
      // (its streams waited out lock expiry, 89 s, when the crash test's kill fell in the survivor's first 2 s).
      await this.#learn(await this.#registry());
      this.#warned = false;
      return false;
    }
    const [ids, lists] = await this.#registryAndClients();
    const peers = await this.#learn(ids);
    this.#warned = false;
    const names = new Set<string>();
    for (const list of lists) for (const m of list.matchAll(/ name=(\S+)/g)) names.add(m[1]!);
    let suspects = false;
    for (const { peer } of this.#known.values()) {
      if (peer.id === selfId) continue;
      if (names.has(workerConnectionName(prefix, peer.id))) {
        this.#misses.delete(peer.id);
        // Handled but connected again (its connections were all down at once and came back): watched afresh, or
        // its real death later would go unhandled and its streams wait out lock expiry.
        if (this.#handled.delete(peer.id)) this.#o.logger.warn({ peer: peer.id }, 'worker connections back; watching it again');
        continue;
      }
      if (this.#handled.has(peer.id)) continue;
      const misses = (this.#misses.get(peer.id) ?? 0) + 1;
      this.#misses.set(peer.id, misses);
      if (misses < MISSES_TO_DECLARE_DEAD) {
        suspects = true;
        continue;
      }
      this.#handled.add(peer.id);
      this.#misses.delete(peer.id);
      // Whether it died or shut down, none of its locks can be renewed any more. A peer that left the registry
      // itself (SIGTERM) usually holds none; one still in it died.
      const registered = peers.some((p) => p.id === peer.id);
      this.#o.logger[registered ? 'warn' : 'info'](
        { peer: peer.id, pid: peer.pid, host: peer.host },
        registered ? 'worker connections gone; handing its jobs back' : 'worker left; releasing any jobs it still holds',
      );
      this.#o.onDead(peer).catch((err: Error) =>
        this.#o.logger.error({ peer: peer.id, err: err.message }, 'could not hand a dead worker\'s jobs back'),
      );
    }
    return suspects;
  }
}
