// A pod's volumes, made as directories under the kubelet's state (<pods dir>/<uid>/volumes/<name>)
// and bind-mounted into OCI containers: emptyDir, hostPath, configMap, secret, downwardAPI and
// projected (serviceAccountToken from the API server's TokenRequest, bound to the pod, plus
// configMap/secret/downwardAPI sources). Contents are written once, when the pod starts.
// Anything else is reported by name, so the kubelet can record an Event instead of dropping it.
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';

export interface VolumeSources {
  configMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** Decoded values. */
  secret(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** A token for the pod's service account, bound to the pod (TokenRequest). */
  token(pod: k8s.V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
  /** Downward API: a field path's value for this pod (fieldRef), or undefined. */
  field(path: string): string | undefined;
}

export interface PreparedVolumes {
  /** Host path of each volume by name. */
  paths: Map<string, string>;
  /** Fields that could not be honoured, e.g. `spec.volumes[x].nfs`. */
  unsupported: string[];
}

function writeFiles(dir: string, data: Record<string, string>, items: k8s.V1KeyToPath[] | undefined, mode: number): void {
  mkdirSync(dir, { recursive: true });
  const pairs = items?.length ? items.filter((i) => i.key in data).map((i) => [i.path, data[i.key]!] as const) : Object.entries(data);
  for (const [path, value] of pairs) {
    const file = join(dir, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, value, { mode });
  }
}

async function projectSource(dir: string, s: k8s.V1VolumeProjection, pod: k8s.V1Pod, src: VolumeSources, mode: number): Promise<string | undefined> {
  const ns = pod.metadata?.namespace ?? 'default';
  if (s.serviceAccountToken) {
    const token = await src.token(pod, s.serviceAccountToken.audience, s.serviceAccountToken.expirationSeconds ?? 3607);
    writeFiles(dir, { [s.serviceAccountToken.path]: token }, undefined, mode);
  } else if (s.configMap) {
    const data = await src.configMap(ns, s.configMap.name!);
    if (!data && !s.configMap.optional) throw new Error(`configmap "${s.configMap.name}" not found`);
    writeFiles(dir, data ?? {}, s.configMap.items, mode);
  } else if (s.secret) {
    const data = await src.secret(ns, s.secret.name!);
    if (!data && !s.secret.optional) throw new Error(`secret "${s.secret.name}" not found`);
    writeFiles(dir, data ?? {}, s.secret.items, mode);
  } else if (s.downwardAPI) {
    writeDownward(dir, s.downwardAPI.items ?? [], src, mode);
  } else {
    return Object.keys(s)[0] ?? 'unknown';
  }
  return undefined;
}

function writeDownward(dir: string, items: k8s.V1DownwardAPIVolumeFile[], src: VolumeSources, mode: number): void {
  const data: Record<string, string> = {};
  for (const i of items) {
    const v = i.fieldRef ? src.field(i.fieldRef.fieldPath) : undefined;
    if (v !== undefined) data[i.path] = v;
  }
  writeFiles(dir, data, undefined, mode);
}

/** Makes every volume of `pod` under `podDir`; throws (with kubelet's words) when a referenced
 *  ConfigMap or Secret is missing, which the kubelet reports as FailedMount. */
export async function prepareVolumes(pod: k8s.V1Pod, podDir: string, src: VolumeSources, hostPath: (path: string) => string = (p) => p): Promise<PreparedVolumes> {
  const paths = new Map<string, string>();
  const unsupported: string[] = [];
  const ns = pod.metadata?.namespace ?? 'default';
  for (const v of pod.spec?.volumes ?? []) {
    const dir = join(podDir, 'volumes', v.name);
    const mode = 0o644;
    if (v.hostPath) {
      // The node's own directory for node-local paths (noderoot.ts).
      const path = hostPath(v.hostPath.path);
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(path, { recursive: true });
      paths.set(v.name, path);
      continue;
    }
    if (v.emptyDir) {
      mkdirSync(dir, { recursive: true });
      chmodSync(dir, 0o777);
    } else if (v.configMap) {
      const data = await src.configMap(ns, v.configMap.name!);
      if (!data && !v.configMap.optional) throw new Error(`MountVolume.SetUp failed for volume "${v.name}" : configmap "${v.configMap.name}" not found`);
      writeFiles(dir, data ?? {}, v.configMap.items, v.configMap.defaultMode ?? mode);
    } else if (v.secret) {
      const data = await src.secret(ns, v.secret.secretName!);
      if (!data && !v.secret.optional) throw new Error(`MountVolume.SetUp failed for volume "${v.name}" : secret "${v.secret.secretName}" not found`);
      writeFiles(dir, data ?? {}, v.secret.items, v.secret.defaultMode ?? mode);
    } else if (v.downwardAPI) {
      writeDownward(dir, v.downwardAPI.items ?? [], src, v.downwardAPI.defaultMode ?? mode);
    } else if (v.projected) {
      mkdirSync(dir, { recursive: true });
      for (const s of v.projected.sources ?? []) {
        const bad = await projectSource(dir, s, pod, src, v.projected.defaultMode ?? mode);
        if (bad) unsupported.push(`spec.volumes[${v.name}].projected.sources.${bad}`);
      }
    } else {
      const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
      unsupported.push(`spec.volumes[${v.name}].${kind}`);
      continue;
    }
    paths.set(v.name, dir);
  }
  return { paths, unsupported };
}

/** The service-account volume's name and where it is mounted (kube-api-access-*, as the
 * ServiceAccount admission plugin adds it). */
export const SA_VOLUME = 'kube-api-access';
export const SA_MOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * The volume that gives a pod's containers its service account's token, the cluster CA and its
 * namespace at SA_MOUNT_PATH, for in-cluster clients (client-node's loadFromCluster). A real
 * cluster's admission plugin writes it into the pod spec; the local kubelet adds it when it starts
 * the pod (the stored pod is unchanged), unless automountServiceAccountToken is false.
 */
export function serviceAccountVolume(): k8s.V1Volume {
  return {
    name: SA_VOLUME,
    projected: {
      defaultMode: 0o644,
      sources: [
        { serviceAccountToken: { path: 'token', expirationSeconds: 3607 } },
        { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
        { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
      ],
    },
  };
}

/** `pod` with the service-account volume mounted in every container that does not mount that
 * path itself; unchanged when `automount` is false. */
export function withServiceAccountVolume(pod: k8s.V1Pod, automount: boolean): k8s.V1Pod {
  if (!automount || !pod.spec) return pod;
  const mount = (c: k8s.V1Container): k8s.V1Container =>
    c.volumeMounts?.some((m) => m.mountPath === SA_MOUNT_PATH) ? c : { ...c, volumeMounts: [...(c.volumeMounts ?? []), { name: SA_VOLUME, mountPath: SA_MOUNT_PATH, readOnly: true }] };
  return {
    ...pod,
    spec: {
      ...pod.spec,
      volumes: [...(pod.spec.volumes ?? []), serviceAccountVolume()],
      containers: pod.spec.containers.map(mount),
      ...(pod.spec.initContainers ? { initContainers: pod.spec.initContainers.map(mount) } : {}),
    },
  };
}

export function removeVolumes(podDir: string): void {
  rmSync(podDir, { recursive: true, force: true });
}
