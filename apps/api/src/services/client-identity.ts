import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RedisClient } from '@chorus/shared';
import type { FastifyRequest } from 'fastify';
import { ChorusError } from '@chorus/shared';

/** A user key (API_KEYS) a request proved it holds (set by the auth plugin). */
export interface ClientKey {
  /** Position in API_KEYS. */
  index: number;
}

/** What a presented key is: one of API_KEYS, ADMIN_API_KEY, or neither (undefined). */
export type KeyMatch = { role: 'user'; key: ClientKey } | { role: 'admin' } | undefined;

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified key; undefined when keys are off or the route needed none. */
    client?: ClientKey;
  }
}

const hmac = (secret: Buffer, value: string) => createHmac('sha256', secret).update(value).digest();

/**
 * API key → client identity, the one place that knows keys: the auth plugin asks `match`, the rate limit names
 * budgets with `clientId`, job routes store `owner` and check `mayRead`. Keys never leave this module, not even
 * as plain hashes. Two roles: API_KEYS are clients (they own jobs, files, batches and budgets); ADMIN_API_KEY is
 * the operator's, for /admin/* (and /metrics), and is never a client.
 *
 * Two secrets, for two jobs:
 * - comparing keys uses a random per-process HMAC key: every candidate becomes a fixed-length digest compared
 *   against every configured key, so neither the key's length nor which key matched shows in the timing, and
 *   the check needs nothing from Redis;
 * - naming clients (budgets, job owners) uses one per-deployment secret that every replica must share and that
 *   must live as long as the jobs it names. It is generated once and kept in Redis (SET NX), next to those jobs:
 *   no variable for an operator to keep equal across replicas, the API starts while Redis is down (the secret is
 *   fetched on first use, and everything that uses it needs Redis anyway), and a Redis that lost it lost the jobs
 *   and budgets it named too. It needs a Redis that never evicts keys, as BullMQ does.
 */
export class ClientIdentity {
  /** User keys are on when API_KEYS is set (ADMIN_API_KEY alone leaves user routes open). */
  readonly enabled: boolean;
  /** ADMIN_API_KEY is set. */
  readonly hasAdmin: boolean;
  readonly #keys: readonly string[];
  readonly #adminIndex: number;
  readonly #adminCookieSecret: Buffer | undefined;
  readonly #compareKey = randomBytes(32);
  readonly #digests: readonly Buffer[];
  readonly #redis: RedisClient;
  readonly #secretKey: string;
  #ids: Promise<string[]> | undefined;

  constructor(opts: { apiKeys: readonly string[]; adminApiKey?: string; redis: RedisClient; secretKey: string }) {
    this.#keys = [...opts.apiKeys, ...(opts.adminApiKey ? [opts.adminApiKey] : [])];
    this.#adminIndex = opts.adminApiKey ? this.#keys.length - 1 : -1;
    this.enabled = opts.apiKeys.length > 0;
    this.hasAdmin = opts.adminApiKey !== undefined;
    // Derived from the admin key: every replica accepts the others' sessions, and a new admin key ends them all.
    this.#adminCookieSecret = opts.adminApiKey
      ? createHmac('sha256', opts.adminApiKey).update('chorus admin session cookie').digest()
      : undefined;
    this.#digests = this.#keys.map((k) => hmac(this.#compareKey, k));
    this.#redis = opts.redis;
    this.#secretKey = opts.secretKey;
  }

  /** Which configured key `token` is, or undefined. Compares against every key, without an early exit. */
  match(token: string): KeyMatch {
    const candidate = hmac(this.#compareKey, token);
    let found = -1;
    for (let i = 0; i < this.#digests.length; i++) {
      const equal = timingSafeEqual(candidate, this.#digests[i]!);
      found = equal ? i : found;
    }
    if (found < 0) return undefined;
    return found === this.#adminIndex ? { role: 'admin' } : { role: 'user', key: { index: found } };
  }

  /** The key @fastify/cookie signs the admin session cookie with; undefined without ADMIN_API_KEY. */
  adminCookieSecret(): Buffer | undefined {
    return this.#adminCookieSecret;
  }

  /** The rate-limit budget: the verified key's identity, else the client address (unknown keys never get one). */
  async clientId(request: FastifyRequest): Promise<string> {
    return request.client ? `k:${await this.#idOf(request.client)}` : `ip:${request.ip}`;
  }

  /** What a new job stores as its owner: undefined while keys are off (jobs are open then). */
  async owner(request: FastifyRequest): Promise<string | undefined> {
    return request.client ? this.#idOf(request.client) : undefined;
  }

  /**
   * Whether this request may see a job (or file, or batch). Keys off: every one. Keys on: the ones its key
   * created; one without an owner (created while keys were off) nobody.
   */
  async mayRead(request: FastifyRequest, owner: string | undefined): Promise<boolean> {
    if (!this.enabled) return true;
    if (!request.client) return false;
    return owner !== undefined && owner === (await this.#idOf(request.client));
  }

  async #idOf(key: ClientKey): Promise<string> {
    this.#ids ??= this.#loadSecret().then(
      (secret) => this.#keys.map((k) => hmac(secret, k).toString('hex').slice(0, 32)),
      (err: unknown) => {
        this.#ids = undefined; // try again on the next request
        throw new ChorusError('TTS_ERR_BACKEND_UNAVAILABLE', 'The service backend is unavailable; retry shortly.', {
          retryAfterS: 1,
          cause: err,
        });
      },
    );
    return (await this.#ids)[key.index]!;
  }

  async #loadSecret(): Promise<Buffer> {
    // First replica wins; the others read what it wrote.
    await this.#redis.set(this.#secretKey, randomBytes(32).toString('hex'), 'NX');
    const stored = await this.#redis.get(this.#secretKey);
    if (!stored || !/^[0-9a-f]{64}$/.test(stored)) throw new Error(`${this.#secretKey} is missing or malformed`);
    return Buffer.from(stored, 'hex');
  }
}
