// The Helm chart's CRDs (daemonset/chart/crds/), installed on the local cluster as Helm installs a
// chart's crds/ directory: before anything that uses them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';

export const CHART_CRD_FILES = ['security.mesh.io.yaml', 'networking.mesh.io.yaml'].map((f) => fileURLToPath(new URL(`../../daemonset/chart/crds/${f}`, import.meta.url)));

/** Creates each CRD, or replaces it with this version's (an upgrade of the local mesh). */
export async function installChartCrds(kc: k8s.KubeConfig, files = CHART_CRD_FILES): Promise<void> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  for (const file of files) {
    // loadAllYaml maps wire names (x-kubernetes-preserve-unknown-fields) to the typed model's, which
    // the client maps back when it sends; a plain YAML parse would lose them on the way out.
    for (const doc of k8s.loadAllYaml(readFileSync(file, 'utf8')) as k8s.V1CustomResourceDefinition[]) {
      if (!doc) continue;
      const name = doc.metadata!.name!;
      try {
        await api.createCustomResourceDefinition({ body: doc });
      } catch (e) {
        if ((e as { code?: number }).code !== 409) throw e;
        const live = await api.readCustomResourceDefinition({ name });
        await api.replaceCustomResourceDefinition({ name, body: { ...doc, metadata: { ...doc.metadata, resourceVersion: live.metadata!.resourceVersion } } });
      }
    }
  }
}
