import cliProgress from 'cli-progress';
import { formatDuration } from './format.ts';
import type { ProgressMode } from './progress.ts';

/*
 * Progress of a batch's items on stderr, the counterpart of progress.ts's byte transfers: done / failed of total,
 * items per second and ETA. On a terminal a redrawn cli-progress bar; elsewhere plain lines, each time another
 * tenth of the items has an outcome and otherwise at most every PLAIN_INTERVAL_MS, never carriage returns.
 */

export interface ItemCounts {
  total: number;
  completed: number;
  failed: number;
}

export interface ItemProgress {
  update(counts: ItemCounts, status: string): void;
  /** Stops a bar; in plain mode prints the last counts if the last line did not show them. */
  stop(): void;
}

const PLAIN_INTERVAL_MS = 10_000;

/** Rate over the items that got an outcome while we watched: a batch joined half-way did not run them now. */
class ItemRate {
  private readonly t0 = performance.now();
  private base: number | undefined;
  perSecond(done: number): number {
    this.base ??= done;
    const s = (performance.now() - this.t0) / 1000;
    return s > 0 ? (done - this.base) / s : 0;
  }
}

/** `in_progress 3/4 (75%): 2 ok, 1 failed, 0.4 items/s ETA 2.5s`; without a rate, no rate or ETA. */
export function describeItems(c: ItemCounts, status: string, rate?: number): string {
  const done = c.completed + c.failed;
  const pct = c.total > 0 ? Math.floor((done / c.total) * 100) : 0;
  const head = `${status} ${done}/${c.total} (${pct}%): ${c.completed} ok, ${c.failed} failed`;
  if (rate === undefined) return head;
  const eta = rate > 0 && done < c.total ? ` ETA ${formatDuration((c.total - done) / rate)}` : '';
  return `${head}, ${rate.toFixed(1)} items/s${eta}`;
}

export function createItemProgress(stream: NodeJS.WriteStream, mode: ProgressMode, label: string): ItemProgress {
  const bar = mode === 'bar' || (mode === 'auto' && stream.isTTY === true);
  return bar ? barProgress(stream, label) : plainProgress(stream, label);
}

function plainProgress(stream: NodeJS.WriteStream, label: string): ItemProgress {
  const rate = new ItemRate();
  let last = '';
  let lastAt = 0;
  let lastTenth = -1;
  let pending: string | undefined;
  return {
    update(c, status) {
      const done = c.completed + c.failed;
      const line = `${label}: ${describeItems(c, status, rate.perSecond(done))}`;
      const tenth = c.total > 0 ? Math.floor((done / c.total) * 10) : 0;
      const key = `${status} ${c.completed} ${c.failed} ${c.total}`;
      if (key !== last && (tenth !== lastTenth || performance.now() - lastAt >= PLAIN_INTERVAL_MS)) {
        stream.write(`${line}\n`);
        [last, lastAt, lastTenth, pending] = [key, performance.now(), tenth, undefined];
      } else if (key !== last) pending = line;
    },
    stop() {
      if (pending) stream.write(`${pending}\n`);
      pending = undefined;
    },
  };
}

function barProgress(stream: NodeJS.WriteStream, label: string): ItemProgress {
  const rate = new ItemRate();
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: '{label} |{bar}| {value}/{total}: {done} ok, {failed} failed, {rate} items/s {left}',
      barsize: 24,
      hideCursor: true,
      fps: 5,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(c, status) {
      const done = c.completed + c.failed;
      const r = rate.perSecond(done);
      const payload = {
        label: `${label} ${status}`, done: c.completed, failed: c.failed, rate: r.toFixed(1),
        left: r > 0 && done < c.total ? `ETA ${formatDuration((c.total - done) / r)}` : '',
      };
      if (!started) bar.start(Math.max(c.total, 1), done, payload);
      else {
        if (c.total !== bar.getTotal()) bar.setTotal(Math.max(c.total, 1));
        bar.update(done, payload);
      }
      started = true;
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
