import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_ENV_NAMES, loadApiConfig, loadWorkerConfig, WORKER_ENV_NAMES } from '@chorus/shared';
import { render, validateObjects, type K8sObject } from './helpers/kubernetes.ts';
import { ROOT } from './helpers/stack.ts';

/*
 * deploy/kubernetes, offline (no cluster): the base and both overlays render with the real kustomize (kubectl
 * kustomize), every object validates against the Kubernetes and KEDA schemas, every variable a container gets is one
 * its app reads and loads as a valid configuration, and the pieces agree with each other (autoscaler targets,
 * grace periods, probes, PDBs).
 */

const DIRS = ['deploy/kubernetes/base', 'deploy/kubernetes/overlays/cpu', 'deploy/kubernetes/overlays/gpu'] as const;
const rendered = new Map<string, K8sObject[]>();

beforeAll(async () => {
  for (const dir of DIRS) rendered.set(dir, await render(dir));
}, 120_000);

const objects = (dir: string) => rendered.get(dir)!;
const ofKind = (dir: string, kind: string) => objects(dir).filter((o) => o.kind === kind);
const clone = <T>(x: T): T => structuredClone(x);

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered YAML is walked by hand */
type Container = { name: string; image: string; env?: any[]; envFrom?: any[]; ports?: any[]; [k: string]: any };
const podSpec = (o: K8sObject): any => (o.spec as any).template.spec;
const containers = (o: K8sObject): Container[] => podSpec(o).containers;
const workloads = (dir: string) => objects(dir).filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');

/** Which app a container runs, from its image: the API, a worker, or something else (Redis). */
function appOf(c: Container): 'api' | 'worker' | undefined {
  if (/(^|\/)chorus-api(:|@|$)/.test(c.image)) return 'api';
  if (/(^|\/)chorus-worker(:|@|$)/.test(c.image)) return 'worker';
  return undefined;
}

/**
 * The environment a container gets: ConfigMap entries (envFrom, in order), then `env` (which wins). Values from a
 * Secret are unknown here: `secret:` placeholders (the Secret is optional; its keys are checked by name).
 */
function containerEnv(dir: string, c: Container): { env: Record<string, string>; fromSecret: string[]; problems: string[] } {
  const env: Record<string, string> = {};
  const fromSecret: string[] = [];
  const problems: string[] = [];
  for (const from of c.envFrom ?? []) {
    if (!from.configMapRef) {
      problems.push(`${c.name}: envFrom other than a ConfigMap cannot be checked`);
      continue;
    }
    const cm = ofKind(dir, 'ConfigMap').find((m) => m.metadata.name === from.configMapRef.name);
    if (!cm) problems.push(`${c.name}: ConfigMap ${from.configMapRef.name} is not in the render`);
    Object.assign(env, (cm as any)?.data ?? {});
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom?.secretKeyRef) fromSecret.push(e.name);
    else if (e.value !== undefined) env[e.name] = String(e.value);
    else problems.push(`${c.name}: ${e.name} has neither a value nor a secretKeyRef`);
  }
  return { env, fromSecret, problems };
}

/** KEDA's Prometheus scaler parameters (keda.sh/docs/2.16/scalers/prometheus); the CRD types metadata as a string map. */
const PROMETHEUS_PARAMS = new Set([
  'serverAddress', 'query', 'threshold', 'activationThreshold', 'namespace', 'customHeaders', 'ignoreNullValues',
  'unsafeSsl', 'queryParameters', 'authModes',
]);
function triggerProblems(scaled: K8sObject[]): string[] {
  return scaled.flatMap((s) =>
    (s.spec as any).triggers.flatMap((t: any) => [
      ...(t.type === 'prometheus' ? [] : [`${s.metadata.name}: trigger ${t.type} is not the prometheus scaler`]),
      ...Object.keys(t.metadata ?? {}).filter((k) => !PROMETHEUS_PARAMS.has(k)).map((k) => `${s.metadata.name}: unknown prometheus trigger parameter ${k}`),
      ...['serverAddress', 'query', 'threshold'].filter((k) => !t.metadata?.[k]).map((k) => `${s.metadata.name}: prometheus trigger without ${k}`),
    ]),
  );
}

const envProblems = (dir: string) =>
  workloads(dir).flatMap((w) =>
    containers(w).flatMap((c) => {
      const app = appOf(c);
      if (!app) return [];
      const known = new Set(app === 'api' ? API_ENV_NAMES : WORKER_ENV_NAMES);
      const { env, fromSecret, problems } = containerEnv(dir, c);
      const unknown = [...Object.keys(env), ...fromSecret].filter((n) => !known.has(n));
      return [...problems, ...unknown.map((n) => `${w.metadata.name}/${c.name}: ${n} is not read by the ${app}`)];
    }),
  );

describe.each(DIRS)('%s', (dir) => {
  it('renders and every object validates against the Kubernetes / KEDA schemas', () => {
    expect(objects(dir).length).toBeGreaterThan(5);
    expect(validateObjects(objects(dir))).toEqual([]);
  });

  it('sets only variables the apps read, with values each app loads', () => {
    expect(envProblems(dir)).toEqual([]);
    for (const w of workloads(dir)) {
      for (const c of containers(w)) {
        const app = appOf(c);
        if (!app) continue;
        const { env } = containerEnv(dir, c);
        // The real loaders: a value out of range or of the wrong shape throws, naming the variable.
        if (app === 'api') expect(() => loadApiConfig(env), w.metadata.name).not.toThrow();
        else expect(() => loadWorkerConfig(env), w.metadata.name).not.toThrow();
      }
    }
  });

  it('grace periods outlast SHUTDOWN_GRACE_S plus preStop; probes hit /readyz, /healthz and the worker METRICS_PORT', () => {
    for (const w of workloads(dir)) {
      for (const c of containers(w)) {
        const app = appOf(c);
        if (!app) continue;
        const { env } = containerEnv(dir, c);
        const grace = Number(env.SHUTDOWN_GRACE_S ?? 30);
        const preStop = c.lifecycle?.preStop?.exec?.command?.[0] === 'sleep' ? Number(c.lifecycle.preStop.exec.command[1]) : 0;
        // A few seconds beyond: after the grace period the process still closes Redis and its servers.
        expect(podSpec(w).terminationGracePeriodSeconds, w.metadata.name).toBeGreaterThanOrEqual(grace + preStop + 5);
        const portOf = (probe: any) => {
          const p = probe.httpGet.port;
          return typeof p === 'number' ? p : c.ports!.find((x: any) => x.name === p)?.containerPort;
        };
        if (app === 'api') {
          expect(c.readinessProbe.httpGet.path).toBe('/readyz');
          expect(c.livenessProbe.httpGet.path).toBe('/healthz');
          expect(portOf(c.readinessProbe)).toBe(Number(env.PORT ?? 8000));
        } else {
          for (const probe of [c.startupProbe, c.readinessProbe, c.livenessProbe]) {
            expect(probe.httpGet.path).toBe('/healthz');
            expect(portOf(probe), w.metadata.name).toBe(Number(env.METRICS_PORT));
          }
          // Prometheus scrapes the port the worker serves /metrics on.
          expect((w.spec as any).template.metadata.annotations['prometheus.io/port'], w.metadata.name).toBe(env.METRICS_PORT);
        }
      }
    }
  });

  it('every API and worker Deployment has a PodDisruptionBudget; workers a ScaledObject on their own engines and lane; the API a CPU HPA', () => {
    const pdbs = ofKind(dir, 'PodDisruptionBudget');
    const scaled = ofKind(dir, 'ScaledObject');
    for (const d of ofKind(dir, 'Deployment')) {
      const labels = (d.spec as any).template.metadata.labels;
      const selected = pdbs.filter((p) => Object.entries((p.spec as any).selector.matchLabels).every(([k, v]) => labels[k] === v));
      expect(selected.length, `PDB for ${d.metadata.name}`).toBe(1);
      const c = containers(d)[0]!;
      if (appOf(c) === 'api') {
        const hpa = ofKind(dir, 'HorizontalPodAutoscaler').find((h) => (h.spec as any).scaleTargetRef.name === d.metadata.name);
        expect((hpa?.spec as any)?.metrics?.[0]?.resource?.name).toBe('cpu');
        expect(c.resources?.requests?.cpu, 'an HPA on CPU needs a CPU request').toBeTruthy();
        continue;
      }
      const so = scaled.filter((s) => (s.spec as any).scaleTargetRef.name === d.metadata.name);
      expect(so.length, `ScaledObject for ${d.metadata.name}`).toBe(1);
      const spec = so[0]!.spec as any;
      expect(triggerProblems(so)).toEqual([]);
      const cfg = loadWorkerConfig(containerEnv(dir, c).env);
      for (const trigger of spec.triggers) {
        expect(trigger.type).toBe('prometheus');
        const query: string = trigger.metadata.query;
        expect(query).toMatch(/chorus_queue_jobs\{/);
        // The engines in the query's selector are exactly the pool's ENGINES.
        const engines = /engine=~?"([^"]+)"/.exec(query)?.[1]?.split('|').sort();
        expect(engines, d.metadata.name).toEqual([...cfg.engines].sort());
        // The lanes it counts are the lanes the pool serves.
        const lane = /lane="([^"]+)"/.exec(query)?.[1];
        const serves = [cfg.concurrency > 0 && 'realtime', cfg.batchConcurrency > 0 && 'batch'].filter(Boolean);
        expect(lane ? [lane] : ['realtime', 'batch'], d.metadata.name).toEqual(serves);
      }
      // Only a batch-only pool may go to zero: realtime requests need a live worker at once.
      if (spec.minReplicaCount === 0) expect(cfg.concurrency, d.metadata.name).toBe(0);
      else expect(spec.minReplicaCount ?? 1).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('deploy/kubernetes overlays', () => {
  it('gpu: the GPU pool asks for an NVIDIA GPU on GPU nodes, with the gpu image and CUDA first; cpu has no GPU anywhere', () => {
    const gpu = ofKind('deploy/kubernetes/overlays/gpu', 'Deployment').find((d) => d.metadata.name === 'chorus-worker-gpu')!;
    const c = containers(gpu)[0]!;
    expect(c.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(podSpec(gpu).nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(c.image).toBe('chorus-worker:gpu');
    expect(loadWorkerConfig(containerEnv('deploy/kubernetes/overlays/gpu', c).env).executionProviders).toEqual(['cuda', 'cpu']);
    const cpuText = JSON.stringify(objects('deploy/kubernetes/overlays/cpu'));
    expect(cpuText).not.toContain('nvidia.com/gpu');
  });

  it('secrets.example.env names only variables the API reads', () => {
    const names = readFileSync(path.join(ROOT, 'deploy/kubernetes/secrets.example.env'), 'utf8')
      .split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => l.split('=')[0]!);
    expect(names.length).toBeGreaterThan(0);
    for (const n of names) expect(API_ENV_NAMES, n).toContain(n);
  });
});

describe('the checks themselves fail on broken manifests', () => {
  const deployment = () => clone(ofKind('deploy/kubernetes/overlays/cpu', 'Deployment').find((d) => d.metadata.name === 'chorus-api')!);

  it('a misspelled field, a field in the wrong place, a wrong type', () => {
    const typo = deployment();
    (typo.spec as any).replica = 3;
    expect(validateObjects([typo]).join('\n')).toMatch(/Deployment\/chorus-api: .*"replica"/);

    const misplaced = deployment();
    containers(misplaced)[0]!.terminationGracePeriodSeconds = 40;
    expect(validateObjects([misplaced]).join('\n')).toMatch(/terminationGracePeriodSeconds/);

    const wrongType = deployment();
    containers(wrongType)[0]!.ports![0].containerPort = 'eight thousand';
    expect(validateObjects([wrongType]).join('\n')).toMatch(/containerPort/);

    // KEDA's schema too (one fault per object: TypeScript reports a literal's first kind of error only).
    const so = () => clone(ofKind('deploy/kubernetes/overlays/cpu', 'ScaledObject')[0]!);
    const badType = so();
    (badType.spec as any).minReplicaCount = 'zero';
    expect(validateObjects([badType]).join('\n')).toMatch(/minReplicaCount/);
    const badName = so();
    (badName.spec as any).cooldownPeriods = 10;
    expect(validateObjects([badName]).join('\n')).toMatch(/cooldownPeriods/);
    const badNested = so();
    (badNested.spec as any).triggers[0].metdata = (badNested.spec as any).triggers[0].metadata;
    delete (badNested.spec as any).triggers[0].metadata;
    expect(validateObjects([badNested]).join('\n')).toMatch(/metdata/);
    // A trigger's metadata is a string map in KEDA's schema: its keys are checked against the Prometheus scaler's.
    const badKey = so();
    (badKey.spec as any).triggers[0].metadata.treshold = '5';
    expect(triggerProblems([badKey])).toEqual(['chorus-worker: unknown prometheus trigger parameter treshold']);
  });

  it('an unknown environment variable', () => {
    const dir = 'deploy/kubernetes/overlays/cpu';
    const saved = objects(dir);
    const broken = clone(saved);
    const api = broken.find((o) => o.kind === 'Deployment' && o.metadata.name === 'chorus-api')!;
    containers(api)[0]!.env!.push({ name: 'MAX_QUEUE_DEPT', value: '10' });
    rendered.set(dir, broken);
    try {
      expect(envProblems(dir)).toEqual(['chorus-api/api: MAX_QUEUE_DEPT is not read by the api']);
    } finally {
      rendered.set(dir, saved);
    }
  });
});
