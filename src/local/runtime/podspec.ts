// What the kubelet reads from a pod spec before it starts a container: its environment (values,
// downward API fieldRefs, configMapKeyRef, secretKeyRef, $(VAR) expansion), the volume sources it
// fetches from the API server, and the fields it cannot honour — each named, for an Event.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { OciContainerSpec } from './oci.ts';
import { containerLimits, ociResourceArgs } from './resources.ts';
import type { PreparedVolumes, VolumeSources } from './volumes.ts';

/** The downward API's field paths (fieldRef) for one pod. */
export function fieldOf(pod: k8s.V1Pod, podIP: string, hostIP: string): (path: string) => string | undefined {
  return (path) => {
    const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
    if (m) return (m[1] === 'labels' ? pod.metadata?.labels : pod.metadata?.annotations)?.[m[2]!];
    if (path === 'metadata.labels' || path === 'metadata.annotations') {
      const map = (path === 'metadata.labels' ? pod.metadata?.labels : pod.metadata?.annotations) ?? {};
      return Object.entries(map).sort().map(([k, v]) => `${k}="${v}"`).join('\n');
    }
    return {
      'metadata.name': pod.metadata?.name,
      'metadata.namespace': pod.metadata?.namespace,
      'metadata.uid': pod.metadata?.uid,
      'spec.nodeName': pod.spec?.nodeName,
      'spec.serviceAccountName': pod.spec?.serviceAccountName ?? 'default',
      'status.podIP': podIP,
      'status.podIPs': podIP,
      'status.hostIP': hostIP,
      'status.hostIPs': hostIP,
    }[path];
  };
}

/** Reads ConfigMaps, Secrets and bound tokens through the API server, as the kubelet does. */
export function apiSources(core: k8s.CoreV1Api, field: (path: string) => string | undefined): VolumeSources {
  const notFound = (e: { code?: number }) => {
    if (e.code === 404) return undefined;
    throw e;
  };
  return {
    configMap: async (namespace, name) => (await core.readNamespacedConfigMap({ namespace, name }).catch(notFound))?.data ?? undefined,
    secret: async (namespace, name) => {
      const s = await core.readNamespacedSecret({ namespace, name }).catch(notFound);
      if (!s) return undefined;
      const out: Record<string, string> = { ...(s.stringData ?? {}) };
      for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64').toString();
      return out;
    },
    token: async (pod, audience, expirationSeconds) => {
      const tr = await core.createNamespacedServiceAccountToken({
        namespace: pod.metadata!.namespace ?? 'default',
        name: pod.spec?.serviceAccountName ?? 'default',
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds,
            boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name!, uid: pod.metadata!.uid! },
          },
        },
      });
      if (!tr.status?.token) throw new Error('TokenRequest returned no token');
      return tr.status.token;
    },
    field,
  };
}

/**
 * The container's environment: `base` plus its env entries in order, each able to refer to the
 * ones before with $(NAME). A missing ConfigMap/Secret key (not optional) throws with kubelet's
 * words; the kubelet reports it as CreateContainerConfigError.
 */
export async function containerEnv(c: k8s.V1Container, namespace: string, base: Record<string, string>, src: VolumeSources): Promise<Record<string, string>> {
  const env = { ...base };
  const cms = new Map<string, Record<string, string> | undefined>();
  const secrets = new Map<string, Record<string, string> | undefined>();
  const lookup = async (kind: 'configmap' | 'secret', ref: { name?: string; key: string; optional?: boolean }) => {
    const cache = kind === 'configmap' ? cms : secrets;
    if (!cache.has(ref.name!)) cache.set(ref.name!, await (kind === 'configmap' ? src.configMap(namespace, ref.name!) : src.secret(namespace, ref.name!)));
    const data = cache.get(ref.name!);
    if (!data && !ref.optional) throw new Error(`${kind} "${ref.name}" not found`);
    const v = data?.[ref.key];
    if (v === undefined && !ref.optional) throw new Error(`couldn't find key ${ref.key} in ${kind === 'configmap' ? 'ConfigMap' : 'Secret'} ${namespace}/${ref.name}`);
    return v;
  };
  for (const e of c.env ?? []) {
    let v: string | undefined = e.value;
    const from = e.valueFrom;
    if (from?.fieldRef) v = src.field(from.fieldRef.fieldPath);
    else if (from?.configMapKeyRef) v = await lookup('configmap', from.configMapKeyRef);
    else if (from?.secretKeyRef) v = await lookup('secret', from.secretKeyRef);
    if (v !== undefined) env[e.name] = v.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k: string) => env[k] ?? m);
  }
  return env;
}

/** Fields of a container the local kubelet does not honour, as paths for an Event. */
export function unsupportedFields(pod: k8s.V1Pod, c: k8s.V1Container, oci: boolean): string[] {
  const out: string[] = [];
  const at = `spec.containers{${c.name}}`;
  if (c.envFrom?.length) out.push(`${at}.envFrom`);
  if (c.env?.some((e) => e.valueFrom?.resourceFieldRef)) out.push(`${at}.env.valueFrom.resourceFieldRef`);
  for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) if (c[kind]?.grpc) out.push(`${at}.${kind}.grpc`);
  if (c.lifecycle?.postStart) out.push(`${at}.lifecycle.postStart`);
  if (c.lifecycle?.preStop?.tcpSocket) out.push(`${at}.lifecycle.preStop.tcpSocket`); // deprecated; exec, httpGet and sleep run
  // Containers run with their output in the log file: no stdin or terminal to attach to.
  if (c.stdin) out.push(`${at}.stdin`);
  if (c.tty) out.push(`${at}.tty`);
  out.push(...containerLimits(c, at).unsupported);
  if (!oci) {
    // A host command shares the host's filesystem and identity: nothing to mount or drop.
    if (c.volumeMounts?.length) out.push(`${at}.volumeMounts`);
    if (c.securityContext) out.push(`${at}.securityContext`);
    if (pod.spec?.hostPID) out.push('spec.hostPID');
  }
  const sc = c.securityContext;
  if (sc?.runAsGroup !== undefined && oci && sc.runAsUser === undefined) out.push(`${at}.securityContext.runAsGroup`);
  return out;
}

/** Pod-level fields the local kubelet does not honour. */
export function unsupportedPodFields(pod: k8s.V1Pod): string[] {
  const s = pod.spec ?? ({} as k8s.V1PodSpec);
  const out: string[] = [];
  if (s.hostIPC) out.push('spec.hostIPC');
  if (s.securityContext && Object.keys(s.securityContext).length) out.push('spec.securityContext');
  if (s.dnsConfig) out.push('spec.dnsConfig');
  if (s.hostAliases?.length) out.push('spec.hostAliases');
  return out;
}

/** Where a pod's OCI container goes: named by the kubelet, in the pod's (or node's) netns and cgroup. */
export interface OciPlacement {
  name: string;
  clusterPrefix: string;
  netnsPath: string;
  cgroup: string;
  /** The pod's service-name hosts file (dns.ts), mounted over /etc/hosts when present. */
  hostsFile?: string;
}

/** The OCI spec (oci.ts runs it) of container `c` of `pod`. */
export function ociSpec(pod: k8s.V1Pod, c: k8s.V1Container, env: Record<string, string>, volumes: PreparedVolumes, at: OciPlacement): OciContainerSpec {
  const sc = c.securityContext;
  const mounts = (c.volumeMounts ?? []).flatMap((m) => {
    const source = volumes.paths.get(m.name);
    if (!source) return [];
    // HostToContainer: mounts made on the host later show in the container (rslave), as the CRI
    // maps it; a pod's named netns appear under /var/run/netns after the node pod started.
    const propagation: 'rslave' | 'rshared' | undefined = m.mountPropagation === 'HostToContainer' ? 'rslave' : m.mountPropagation === 'Bidirectional' ? 'rshared' : undefined;
    return [{ source: m.subPath ? join(source, m.subPath) : source, target: m.mountPath, readOnly: m.readOnly === true, ...(propagation ? { propagation } : {}) }];
  });
  if (at.hostsFile && existsSync(at.hostsFile) && !mounts.some((m) => m.target === '/etc/hosts')) mounts.push({ source: at.hostsFile, target: '/etc/hosts', readOnly: true });
  const meta = pod.metadata!;
  return {
    name: at.name,
    clusterPrefix: at.clusterPrefix,
    image: c.image ?? '',
    ...(c.command?.length ? { command: c.command } : {}),
    ...(c.args?.length ? { args: c.args } : {}),
    env,
    ...(c.workingDir ? { workingDir: c.workingDir } : {}),
    hostname: meta.name!,
    netnsPath: at.netnsPath,
    cgroup: at.cgroup,
    hostPID: pod.spec?.hostPID === true,
    privileged: sc?.privileged === true,
    capAdd: sc?.capabilities?.add ?? [],
    capDrop: sc?.capabilities?.drop ?? [],
    ...(sc?.runAsUser !== undefined ? { user: `${sc.runAsUser}${sc.runAsGroup !== undefined ? `:${sc.runAsGroup}` : ''}` } : {}),
    ...(sc?.readOnlyRootFilesystem ? { readOnly: true } : {}),
    ...(sc?.allowPrivilegeEscalation === false ? { noNewPrivileges: true } : {}),
    ...((sc?.seccompProfile ?? pod.spec?.securityContext?.seccompProfile)?.type === 'Unconfined' ? { seccompUnconfined: true } : {}),
    mounts,
    resourceArgs: ociResourceArgs(containerLimits(c, '').limits),
    labels: { 'io.kubernetes.pod.name': meta.name!, 'io.kubernetes.pod.namespace': meta.namespace ?? 'default', 'io.kubernetes.pod.uid': meta.uid!, 'io.kubernetes.container.name': c.name },
  };
}
