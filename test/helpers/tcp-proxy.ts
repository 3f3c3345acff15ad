import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  url: string;
  /**
   * Black-holes every connection open now, forever: bytes in either direction are dropped and nothing is
   * closed, as when a NAT or load balancer forgets a connection. New connections are black-holed too until
   * `heal()`.
   */
  partition(): void;
  /** New connections are forwarded again; the black-holed ones stay dead. */
  heal(): void;
  close(): Promise<void>;
}

/** A TCP forwarder to 127.0.0.1:`targetPort` that a test can cut without any socket error reaching either side. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let cut = false;
  const sockets = new Set<Socket>();
  const links: { client: Socket; upstream: Socket | undefined; dead: boolean }[] = [];

  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const link = { client, upstream: undefined as Socket | undefined, dead: cut };
    links.push(link);
    if (link.dead) {
      client.on('data', () => {}); // swallow
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    link.upstream = upstream;
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('data', (d) => !link.dead && upstream.write(d));
    upstream.on('data', (d) => !link.dead && client.write(d));
    client.on('close', () => !link.dead && upstream.destroy());
    upstream.on('close', () => !link.dead && client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    partition() {
      cut = true;
      for (const link of links) link.dead = true;
    },
    heal() {
      cut = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
