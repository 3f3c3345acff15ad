import cliProgress from 'cli-progress';
import { formatBytes, formatDuration } from './format.ts';

/*
 * Download progress on stderr (stdout stays for data such as --json). On a terminal: a redrawn bar with bytes, rate
 * and ETA (cli-progress). Elsewhere (logs, CI, pipes): plain lines, a few per file, never carriage returns.
 */

export interface Transfer {
  /** Bytes of the file on disk so far, resumed part included. */
  update(done: number): void;
  /** Back to `done` bytes (the server ignored a Range request, or a retry restarts). */
  reset(done: number): void;
  stop(): void;
}

export interface Progress {
  begin(label: string, total: number | undefined, done: number): Transfer;
  /** One line of text, printed without breaking a bar. */
  note(line: string): void;
}

export type ProgressMode = 'auto' | 'bar' | 'plain';

/** Plain mode prints at 25/50/75 % for files at least this large, and otherwise every PLAIN_INTERVAL_MS. */
const PLAIN_QUARTILES_FROM = 1 << 20;
const PLAIN_INTERVAL_MS = 5000;

export function createProgress(stream: NodeJS.WriteStream, mode: ProgressMode): Progress {
  const bar = mode === 'bar' || (mode === 'auto' && stream.isTTY === true);
  return bar ? new BarProgress(stream) : new PlainProgress(stream);
}

/** Rate over this run's bytes only: a resumed part was not transferred now. */
class RateMeter {
  private readonly t0 = performance.now();
  constructor(private base: number) {}
  reset(done: number): void {
    this.base = done;
  }
  /** bytes per second */
  rate(done: number): number {
    const s = (performance.now() - this.t0) / 1000;
    return s > 0 ? Math.max(0, done - this.base) / s : 0;
  }
}

function describe(done: number, total: number | undefined, rate: number): string {
  const pct = total ? ` ${Math.floor((done / total) * 100)}%` : '';
  const size = total !== undefined ? `${formatBytes(done)}/${formatBytes(total)}` : formatBytes(done);
  const eta = total !== undefined && rate > 0 ? ` ETA ${formatDuration((total - done) / rate)}` : '';
  return `${pct.trimStart()} ${size} ${formatBytes(Math.round(rate))}/s${eta}`.trim();
}

class PlainProgress implements Progress {
  constructor(private readonly stream: NodeJS.WriteStream) {}

  note(line: string): void {
    this.stream.write(`${line}\n`);
  }

  begin(label: string, total: number | undefined, done: number): Transfer {
    const meter = new RateMeter(done);
    let lastPrint = performance.now();
    let nextQuartile = total && total >= PLAIN_QUARTILES_FROM ? Math.floor((done / total) * 4) + 1 : 5;
    const print = (d: number) => {
      lastPrint = performance.now();
      this.note(`${label}: ${describe(d, total, meter.rate(d))}`);
    };
    return {
      update: (d) => {
        const quartile = total ? (d / total) * 4 : 0;
        if (nextQuartile < 4 && quartile >= nextQuartile) {
          while (nextQuartile < 4 && quartile >= nextQuartile) nextQuartile++;
          print(d);
        } else if (performance.now() - lastPrint >= PLAIN_INTERVAL_MS) print(d);
      },
      reset: (d) => {
        meter.reset(d);
        nextQuartile = total && total >= PLAIN_QUARTILES_FROM ? Math.floor((d / total) * 4) + 1 : 5;
      },
      stop: () => {},
    };
  }
}

class BarProgress implements Progress {
  private active: cliProgress.SingleBar | undefined;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  note(line: string): void {
    // A line printed under a live bar would be overdrawn: clear the bar's line first, cli-progress redraws it.
    if (this.active) this.stream.write('\r\x1b[2K');
    this.stream.write(`${line}\n`);
  }

  begin(label: string, total: number | undefined, done: number): Transfer {
    const meter = new RateMeter(done);
    const bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format: '{label} |{bar}| {percentage}% {sizes} {rate}/s ETA {eta_formatted}',
        barsize: 24,
        hideCursor: true,
        fps: 10,
        etaBuffer: 50,
        autopadding: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let size = total ?? Math.max(done, 1);
    const payload = (d: number) => ({
      label,
      sizes: `${formatBytes(d)}/${total !== undefined ? formatBytes(total) : '?'}`,
      rate: formatBytes(Math.round(meter.rate(d))),
    });
    bar.start(size, done, payload(done));
    this.active = bar;
    return {
      update: (d) => {
        if (total === undefined && d > size) bar.setTotal((size = d));
        bar.update(d, payload(d));
      },
      reset: (d) => {
        meter.reset(d);
        bar.update(d, payload(d));
      },
      stop: () => {
        bar.stop();
        if (this.active === bar) this.active = undefined;
      },
    };
  }
}
