import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import type { Model } from '@kubernetes-models/base';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { ROOT } from './stack.ts';

/*
 * Offline checks of Kubernetes manifests: `kubectl kustomize` (the real tool, fetched by scripts/install.sh) renders
 * them, then every object is checked against the Kubernetes and KEDA object schemas twice over, both from the
 * `kubernetes-models` packages (generated from the upstream OpenAPI / CRD schemas):
 *  - their ajv validators (types, required fields, formats), which accept unknown fields;
 *  - their TypeScript interfaces, with the object as a literal: TypeScript's excess-property check rejects a
 *    misspelled or misplaced field anywhere in it, as `kubectl apply --validate=strict` would.
 */

const run = promisify(execFile);

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; [k: string]: unknown }; [k: string]: unknown };

/** The kubectl the tests use: $KUBECTL, else the one scripts/install.sh keeps in .tools/. */
export function kubectlPath(): string {
  const fromEnv = process.env.KUBECTL;
  if (fromEnv) return fromEnv;
  const local = path.join(ROOT, '.tools/kubectl-1.33.9/kubectl');
  if (existsSync(local)) return local;
  throw new Error('no kubectl: run scripts/install.sh (it fetches kubectl 1.33.9 into .tools/), or set KUBECTL');
}

/** `kubectl kustomize <dir>` (relative to the repository root), parsed into objects. */
export async function render(dir: string): Promise<K8sObject[]> {
  const { stdout } = await run(kubectlPath(), ['kustomize', path.join(ROOT, dir)], { maxBuffer: 16 << 20 });
  return parseAllDocuments(stdout).map((d) => {
    if (d.errors.length) throw new Error(`${dir}: ${d.errors[0]!.message}`);
    return d.toJS() as K8sObject;
  }).filter(Boolean);
}

/** Model class (runtime validator) and TypeScript interface (module, name) per apiVersion/kind. */
const KINDS: Record<string, { model: new (data: never) => Model<unknown>; module: string; type: string }> = {
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/Namespace': { model: Namespace, module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/PersistentVolumeClaim': { model: PersistentVolumeClaim, module: 'kubernetes-models/v1/PersistentVolumeClaim', type: 'IPersistentVolumeClaim' },
  'v1/Secret': { model: Secret, module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/Service': { model: Service, module: 'kubernetes-models/v1/Service', type: 'IService' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'apps/v1/StatefulSet': { model: StatefulSet, module: 'kubernetes-models/apps/v1/StatefulSet', type: 'IStatefulSet' },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1/PodDisruptionBudget', type: 'IPodDisruptionBudget' },
  'autoscaling/v2/HorizontalPodAutoscaler': {
    model: HorizontalPodAutoscaler, module: 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', type: 'IHorizontalPodAutoscaler',
  },
  'keda.sh/v1alpha1/ScaledObject': { model: ScaledObject, module: '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject', type: 'IScaledObject' },
};

const label = (o: K8sObject) => `${o.kind}/${o.metadata?.name}`;

/** Every problem found in `objects` (empty: all valid). */
export function validateObjects(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const typed: { o: K8sObject; kind: (typeof KINDS)[string] }[] = [];
  for (const o of objects) {
    const kind = KINDS[`${o.apiVersion}/${o.kind}`];
    if (!kind) {
      problems.push(`${label(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    try {
      new kind.model(o as never).validate();
    } catch (err) {
      problems.push(`${label(o)}: ${(err as Error).message}`);
    }
    typed.push({ o, kind });
  }
  problems.push(...typeCheck(typed));
  return problems;
}

/** Type-checks each object as a literal of its kind's interface (excess-property checks catch unknown fields). */
function typeCheck(items: { o: K8sObject; kind: (typeof KINDS)[string] }[]): string[] {
  if (items.length === 0) return [];
  const file = path.join(ROOT, 'test', '__kubernetes_manifests__.ts');
  const imports = [...new Set(items.map(({ kind }) => `import type { ${kind.type} } from '${kind.module}';`))];
  const body = items.map(({ o, kind }, i) => `// ${label(o)}\nexport const m${i}: ${kind.type} = ${JSON.stringify(o, null, 1)};`);
  const source = [...imports, ...body].join('\n');
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    path.resolve(name) === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const lines = source.split('\n');
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || !d.start) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    // The object the error is in: the nearest `// Kind/name` comment above it.
    let at = line;
    while (at > 0 && !lines[at]!.startsWith('// ')) at--;
    return `${lines[at]?.slice(3) ?? '?'}: ${text} (near: ${lines[line]?.trim()})`;
  });
}
