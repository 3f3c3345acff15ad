import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

/** How often a connection is looked at. */
const CHECK_EVERY_MS = 2000;
/** A PING unanswered this long means the connection is dead even though no socket error came. */
const PING_TIMEOUT_MS = 3000;
/** Connected but never ready this long: the handshake went into a black hole (ioredis has no timeout for it). */
const HANDSHAKE_TIMEOUT_MS = 5000;

/**
 * Replaces a connection that silently stopped answering. A Redis that dies or restarts closes its sockets and
 * ioredis reconnects by itself; but when a NAT, load balancer or partition drops a connection without a reset,
 * the socket stays open and every command waits forever (or, with `commandTimeout`, fails forever, even after
 * the network heals). So: a PING unanswered within PING_TIMEOUT_MS, or a reconnect stuck between TCP connect and
 * ready for HANDSHAKE_TIMEOUT_MS, forces a fresh connection; ioredis re-sends what the old one still owed
 * (worker role). Blocking connections are not pinged (a PING would queue behind their XREAD/BZPOPMIN; the relay
 * times its own reads) but do get the handshake check. A Redis still loading a large AOF also holds clients
 * before ready; they then reconnect every few seconds until it is done, which costs nothing but log lines.
 */
export function monitorLink(client: Redis, role: string, opts: { ping: boolean; logger?: Logger }): void {
  let pinging = false;
  let handshakeSince: number | undefined;

  const reconnect = (why: string) => {
    opts.logger?.warn({ role }, `redis connection ${why}; reconnecting`);
    handshakeSince = undefined;
    client.disconnect(true);
  };

  const timer = setInterval(() => {
    if (client.status === 'connect') {
      handshakeSince ??= Date.now();
      if (Date.now() - handshakeSince >= HANDSHAKE_TIMEOUT_MS) reconnect('handshake got no answer');
      return;
    }
    handshakeSince = undefined;
    if (!opts.ping || pinging || client.status !== 'ready') return;
    pinging = true;
    let deadline: NodeJS.Timeout | undefined;
    const silent = new Promise<'dead'>((resolve) => {
      deadline = setTimeout(() => resolve('dead'), PING_TIMEOUT_MS);
    });
    const answer = client.ping().then(
      () => 'ok' as const,
      (err: Error) => (/timed out/i.test(err.message) ? ('dead' as const) : ('ok' as const)),
    );
    void Promise.race([answer, silent]).then((result) => {
      clearTimeout(deadline);
      pinging = false;
      if (result === 'dead' && client.status === 'ready') reconnect('stopped answering');
    });
  }, CHECK_EVERY_MS);
  timer.unref();
  client.once('end', () => clearInterval(timer));
}
