import { Resvg } from '@resvg/resvg-js';

/*
 * Minimal line charts as SVG, rendered to PNG by resvg (a Rust renderer shipped as a prebuilt binary inside its
 * npm package: no system libraries, works offline). Text uses the system's DejaVu Sans when present.
 */

export interface Series {
  name: string;
  values: number[];
  color: string;
  dashed?: boolean;
}

export interface Panel {
  title: string;
  x: number[];
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Plot x on a log2 scale (concurrency and worker counts double each step). */
  logX?: boolean;
  /** A horizontal reference line (a target). */
  hline?: { y: number; label: string };
}

const FONT = 'DejaVu Sans, Arial, sans-serif';
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** 1, 2, 5 × 10^k steps giving about `count` ticks from 0 to max. */
function niceTicks(max: number, count = 5): number[] {
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(6)));
  if (ticks[ticks.length - 1]! < max) ticks.push(Number((ticks[ticks.length - 1]! + step).toPrecision(6)));
  return ticks;
}

function panelSvg(p: Panel, x0: number, y0: number, w: number, h: number): string {
  const m = { l: 70, r: 20, t: 40, b: 80 };
  const pw = w - m.l - m.r;
  const ph = h - m.t - m.b;
  const xs = p.x.map((v) => (p.logX ? Math.log2(v) : v));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const all = p.series.flatMap((s) => s.values).filter(Number.isFinite).concat(p.hline ? [p.hline.y] : []);
  const yTicks = niceTicks(Math.max(...all) * 1.05);
  const yMax = yTicks[yTicks.length - 1]!;
  const X = (v: number) => x0 + m.l + ((v - xMin) / (xMax - xMin || 1)) * pw;
  const Y = (v: number) => y0 + m.t + ph - (v / yMax) * ph;
  const out: string[] = [];
  out.push(`<text x="${x0 + m.l}" y="${y0 + 24}" font-size="17" font-weight="bold">${esc(p.title)}</text>`);
  for (const t of yTicks) {
    out.push(`<line x1="${X(xMin)}" x2="${X(xMax)}" y1="${Y(t)}" y2="${Y(t)}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${X(xMin) - 8}" y="${Y(t) + 4}" font-size="12" text-anchor="end">${t}</text>`);
  }
  p.x.forEach((v, i) => {
    out.push(`<line x1="${X(xs[i]!)}" x2="${X(xs[i]!)}" y1="${Y(0)}" y2="${Y(0) + 5}" stroke="#444"/>`);
    out.push(`<text x="${X(xs[i]!)}" y="${Y(0) + 19}" font-size="12" text-anchor="middle">${v}</text>`);
  });
  out.push(`<line x1="${X(xMin)}" x2="${X(xMax)}" y1="${Y(0)}" y2="${Y(0)}" stroke="#444"/>`);
  out.push(`<line x1="${X(xMin)}" x2="${X(xMin)}" y1="${Y(0)}" y2="${Y(yMax)}" stroke="#444"/>`);
  out.push(`<text x="${X(xMin) + pw / 2}" y="${Y(0) + 38}" font-size="13" text-anchor="middle">${esc(p.xLabel)}</text>`);
  const yl = `${x0 + 18},${y0 + m.t + ph / 2}`;
  out.push(`<text transform="translate(${yl}) rotate(-90)" font-size="13" text-anchor="middle">${esc(p.yLabel)}</text>`);
  if (p.hline) {
    out.push(`<line x1="${X(xMin)}" x2="${X(xMax)}" y1="${Y(p.hline.y)}" y2="${Y(p.hline.y)}" stroke="#c0392b" stroke-dasharray="3,4"/>`);
    out.push(`<text x="${X(xMax) - 4}" y="${Y(p.hline.y) - 6}" font-size="12" text-anchor="end" fill="#c0392b">${esc(p.hline.label)}</text>`);
  }
  for (const s of p.series) {
    const pts = s.values.map((v, i) => `${X(xs[i]!)},${Y(v)}`).join(' ');
    out.push(`<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="7,5"' : ''}/>`);
    s.values.forEach((v, i) => out.push(`<circle cx="${X(xs[i]!)}" cy="${Y(v)}" r="3.5" fill="${s.color}"/>`));
  }
  // Legend below the axis label, in one row.
  let lx = x0 + m.l;
  const ly = Y(0) + 62;
  for (const s of p.series) {
    out.push(`<line x1="${lx}" x2="${lx + 26}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="7,5"' : ''}/>`);
    out.push(`<text x="${lx + 32}" y="${ly}" font-size="12">${esc(s.name)}</text>`);
    lx += 42 + s.name.length * 7;
  }
  return out.join('\n');
}

/** Panels in a grid of `cols` columns, with a title and a footnote line. */
export function renderPanels(panels: Panel[], opts: { title: string; footnote: string; cols?: number }): Buffer {
  const cols = opts.cols ?? 2;
  const pw = 640;
  const ph = 400;
  const rows = Math.ceil(panels.length / cols);
  const W = cols * pw;
  const H = rows * ph + 90;
  const body = panels.map((p, i) => panelSvg(p, (i % cols) * pw, 50 + Math.floor(i / cols) * ph, pw, ph)).join('\n');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="${FONT}" fill="#222">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="32" font-size="21" font-weight="bold">${esc(opts.title)}</text>
${body}
<text x="20" y="${H - 16}" font-size="12" fill="#555">${esc(opts.footnote)}</text>
</svg>`;
  return new Resvg(svg, { font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
}
