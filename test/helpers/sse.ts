import http from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** The events of a whole SSE body, parsed with eventsource-parser. */
export function parseSse(text: string): EventSourceMessage[] {
  const events: EventSourceMessage[] = [];
  createParser({ onEvent: (e) => events.push(e) }).feed(text);
  return events;
}

/** POSTs, reads `count` SSE events, then drops the connection (socket destroyed, as a vanished client). */
export function readSomeSse(url: string, body: unknown, count: number): Promise<EventSourceMessage[]> {
  return new Promise((resolve, reject) => {
    const events: EventSourceMessage[] = [];
    const parser = createParser({ onEvent: (e) => events.push(e) });
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        parser.feed(chunk);
        if (events.length >= count) {
          req.destroy();
          resolve(events.slice(0, count));
        }
      });
      res.on('end', () => resolve(events));
    });
    req.on('error', (err) => (events.length >= count ? undefined : reject(err)));
    req.end(JSON.stringify(body));
  });
}
