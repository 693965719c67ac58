// Validates manifests against the Kubernetes API types as @kubernetes/client-node declares them
// (generated from the API's OpenAPI document): each object becomes a TypeScript object literal
// typed as its kind's model, and the compiler's excess-property and type checks report unknown
// fields, wrong types and missing required fields with their path. The local API server does not
// decode built-in kinds strictly, so this stands in for a real server's fieldValidation=Strict.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The kinds checked, by apiVersion/kind: the client's model class for each. */
const MODELS: Record<string, string> = {
  'v1/ServiceAccount': 'V1ServiceAccount',
  'v1/Service': 'V1Service',
  'v1/ConfigMap': 'V1ConfigMap',
  'apps/v1/Deployment': 'V1Deployment',
  'apps/v1/DaemonSet': 'V1DaemonSet',
  'rbac.authorization.k8s.io/v1/ClusterRole': 'V1ClusterRole',
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': 'V1ClusterRoleBinding',
  'rbac.authorization.k8s.io/v1/Role': 'V1Role',
  'rbac.authorization.k8s.io/v1/RoleBinding': 'V1RoleBinding',
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy': 'V1ValidatingAdmissionPolicy',
  'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding': 'V1ValidatingAdmissionPolicyBinding',
};

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface TypeProblem {
  object: string;
  message: string;
}

/** Type-checks every object whose kind has a model; returns the kinds it could not check (CRDs
 * are left to the API server, which validates them) and the problems found. */
export function checkKubernetesTypes(objects: { apiVersion: string; kind: string; metadata: { name: string } }[]): { unchecked: string[]; problems: TypeProblem[] } {
  const unchecked: string[] = [];
  const names: string[] = [];
  const lines = ["import type * as k from '@kubernetes/client-node';"];
  for (const o of objects) {
    const model = MODELS[`${o.apiVersion}/${o.kind}`];
    const id = `${o.kind}/${o.metadata.name}`;
    if (!model) {
      unchecked.push(id);
      continue;
    }
    // One object per line, so a diagnostic's line names its object.
    lines.push(`export const o${names.length}: k.${model} = ${JSON.stringify(o)};`);
    names.push(id);
  }
  // In the repository (so that @kubernetes/client-node resolves), in a scratch dir of its own.
  mkdirSync(join(ROOT, '.scratch'), { recursive: true });
  const dir = mkdtempSync(join(ROOT, '.scratch', 'k8s-types-'));
  try {
    const file = join(dir, 'manifests.ts');
    writeFileSync(file, lines.join('\n'));
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
      types: [],
    });
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
      return { object: names[line - 1] ?? '?', message: ts.flattenDiagnosticMessageText(d.messageText, '\n') };
    });
    return { unchecked, problems };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
