/** A sample line of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  /** Metric families declared with `# TYPE`, name → type. */
  types: Map<string, string>;
  samples: Sample[];
  /** Every series name a query may use: declared families plus _bucket/_sum/_count of histograms and summaries. */
  seriesNames: Set<string>;
}

/** Parses the text format prom-client writes (no escaping edge cases beyond `\"` in label values). */
export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  const seriesNames = new Set<string>();
  for (const [name, type] of types) {
    seriesNames.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) seriesNames.add(name + s);
    if (type === 'summary') for (const s of ['_sum', '_count']) seriesNames.add(name + s);
  }
  return { types, samples, seriesNames };
}

export async function scrape(url: string): Promise<Exposition> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return parseExposition(await res.text());
}

/** Sum of the samples of `name` whose labels include `match`. */
export function total(exp: Exposition, name: string, match: Record<string, string> = {}): number {
  return exp.samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
