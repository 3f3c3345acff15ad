import http from 'node:http';

/**
 * POSTs a speech request and reads its response like a slow client: the first chunk, then a pause of `pauseMs`
 * without reading, then the rest. Resolves with the status and every byte received.
 */
export function speechWithPause(url: string, body: unknown, pauseMs: number): Promise<{ status: number; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      const parts: Buffer[] = [];
      res.once('data', (d: Buffer) => {
        parts.push(d);
        res.pause();
        setTimeout(() => {
          res.on('data', (x: Buffer) => parts.push(x));
          res.resume();
        }, pauseMs);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
