import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS, errorNameForCode, type ErrorName } from '@chorus/shared';
import { ROOT } from './helpers/stack.ts';

/*
 * The error catalogue (packages/shared/src/errors.ts) is the one list of failures a client can see. Like Fastify's
 * own test of its error codes: every entry is used by the code, every entry is documented in the README's table
 * with the same status and type, and the README documents nothing that is not in it.
 */

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const SOURCES = ['apps', 'packages']
  .flatMap((d) => readdirSync(path.join(ROOT, d)).map((w) => path.join(ROOT, d, w, 'src')))
  .filter((d) => statSync(d, { throwIfNoEntry: false })?.isDirectory())
  .flatMap(sourceFiles)
  .filter((f) => !f.endsWith(path.join('packages', 'shared', 'src', 'errors.ts')));
const CODE = SOURCES.map((f) => readFileSync(f, 'utf8')).join('\n');

interface Row {
  status: number;
  type: string;
  codes: string[];
}

function readmeTable(): Row[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Error codes'));
  const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| case')));
  return table
    .split('\n')
    .filter((l) => /^\|[^|]+\|\s*\d{3}\s*\|/.test(l))
    .map((l) => {
      const [, , status, type, codes] = l.split('|').map((c) => c.trim());
      return {
        status: Number(status),
        type: type!.replace(/`/g, ''),
        // codes are the back-ticked words before any parenthesised note about headers
        codes: [...codes!.replace(/\(.*\)/, '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!),
      };
    });
}

describe('error catalogue', () => {
  const entries = Object.entries(ERRORS) as [ErrorName, (typeof ERRORS)[ErrorName]][];

  it('every entry is used by the code', () => {
    expect(SOURCES.length).toBeGreaterThan(30);
    const unused = entries.map(([name]) => name).filter((name) => !new RegExp(`\\b${name}\\b`).test(CODE));
    expect(unused).toEqual([]);
  });

  it('every entry is in the README table with its status and type, and the table lists nothing else', () => {
    const rows = readmeTable();
    expect(rows.length).toBeGreaterThan(5);
    for (const [name, spec] of entries) {
      const row = rows.find((r) => r.codes.includes(spec.code) && r.status === spec.status && r.type === spec.type);
      expect(row, `${name}: ${spec.status} ${spec.type} ${spec.code} missing from the README`).toBeDefined();
    }
    for (const row of rows) {
      for (const code of row.codes) {
        const match = entries.find(([, s]) => s.code === code && s.status === row.status && s.type === row.type);
        expect(match, `README lists ${row.status} ${row.type} ${code}, which is not in the catalogue`).toBeDefined();
      }
    }
  });

  it('codes round-trip through stream records (worker → API) to their own entry', () => {
    // A code may be shared by two entries (invalid_value); it must map back to one with the same status and type.
    for (const [, spec] of entries) {
      const back = ERRORS[errorNameForCode(spec.code)];
      expect({ status: back.status, type: back.type, code: back.code }).toEqual({ status: spec.status, type: spec.type, code: spec.code });
    }
  });
});
