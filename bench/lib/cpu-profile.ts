import { readFileSync } from 'node:fs';

/** The parts of a V8 .cpuprofile (written by `node --cpu-prof`) that a self-time summary needs. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time by module (a package in node_modules, a file of ours, or a V8/Node category). */
  byModule: { module: string; ms: number; share: number }[];
  /** Self time by function. */
  byFunction: { fn: string; ms: number; share: number }[];
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return url;
  const ours = /\/((?:apps|packages|bench)\/.+)$/.exec(url);
  return ours ? ours[1]! : url;
}

/** Self time per module and per function, from each sample's time delta (idle time shown as "(idle)"). */
export function summarizeProfile(file: string, top = 12): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const mods = new Map<string, number>();
  const fns = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)' || cf.functionName === '(program)') continue;
    busy += us;
    const mod = moduleOf(cf.url, cf.functionName);
    mods.set(mod, (mods.get(mod) ?? 0) + us);
    const fn = `${cf.functionName || '(anonymous)'} ${mod}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) => ({ k, ms: Math.round(us / 100) / 10, share: Math.round((us / busy) * 1000) / 10 }));
  return {
    totalMs: Math.round(busy / 1000),
    byModule: rank(mods).map(({ k, ms, share }) => ({ module: k, ms, share })),
    byFunction: rank(fns).map(({ k, ms, share }) => ({ fn: k, ms, share })),
  };
}
