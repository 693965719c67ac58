// Deploys each waypoint (a Gateway of class mesh-waypoint) as Istio's gateway deployment
// controller does: a ServiceAccount, a Service and a Deployment named after the Gateway and owned
// by it (deleting the Gateway garbage-collects them), and writes the Gateway's status: Accepted
// once its listeners are what a waypoint takes, Programmed once its Deployment has an available
// replica, and its addresses. It also makes sure the GatewayClass exists and is Accepted.
//
// The model (model/waypoints.ts) reads that status and the Service's endpoints to decide whether
// the waypoint can take traffic; until then its users' connections are refused (fail closed).
import * as k8s from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import { HBONE_PORT, WAYPOINT_DRAIN_DELAY_MS, WAYPOINT_DRAIN_TIMEOUT_MS } from '../common/constants.ts';
import { logger } from '../common/log.ts';
import { parseDuration } from '../common/settings.ts';
import { CA_TOKEN_AUDIENCE } from '../identity/index.ts';
import { LABEL_DATAPLANE_MODE, LABEL_GATEWAY_NAME, WAYPOINT_CLASS } from './model/types.ts';
import { installOwner } from './owner.ts';
import { WAYPOINT_ENTRY, WAYPOINT_NODE_FLAGS, WAYPOINT_PROCESS_ENV } from '../waypoint/config.ts';

const log = logger('waypoints');

export const WAYPOINT_CONTROLLER_NAME = 'mesh.io/waypoint-controller';
const SPEC_HASH = 'mesh.io/waypoint-spec-hash';
const GATEWAY_API = 'gateway.networking.k8s.io';
/** Istio's waypoint ports: status (readiness) and merged metrics. */
export const WAYPOINT_READINESS_PORT = 15021;
export const WAYPOINT_METRICS_PORT = 15020;
const TOKEN_DIR = '/var/run/secrets/tokens';
const ROOT_DIR = '/var/run/secrets/mesh';

/**
 * The waypoint pod's grace period: its drain (MESH_DRAIN_DELAY, then MESH_DRAIN_TIMEOUT; see
 * Waypoint.drain) and a few seconds to exit, so the kubelet never kills a waypoint that is still
 * finishing requests. An unbounded drain (0) gets a year, the API's way of saying "until done".
 */
export function drainGraceSeconds(env: Readonly<Record<string, string>>): number {
  const delay = parseDuration(env.MESH_DRAIN_DELAY ?? '') ?? WAYPOINT_DRAIN_DELAY_MS;
  const timeout = parseDuration(env.MESH_DRAIN_TIMEOUT ?? '') ?? WAYPOINT_DRAIN_TIMEOUT_MS;
  if (timeout === 0) return 365 * 86_400;
  return Math.ceil((delay + timeout) / 1000) + 5;
}

/** What every waypoint pod runs: the chart's image, or the local cluster's host-mounted one. */
export interface WaypointTemplate {
  image: string;
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** Overrides the image's entrypoint (node) when non-empty. */
  command: string[];
  /** The waypoint's entry file, node's argument after the flags; default WAYPOINT_ENTRY (the image's). */
  entry?: string;
  /** Node/V8 flags ahead of the entry in place of WAYPOINT_NODE_FLAGS (a benchmark's comparison). */
  nodeFlags?: readonly string[];
  /** Added to the waypoint's own settings (e.g. where the controller is) and WAYPOINT_PROCESS_ENV;
   * a WAYPOINT_PROCESS_ENV key given as '' is left unset. */
  env: Record<string, string>;
  /** Extra volumes and their mounts (the local cluster mounts the host's runtime and sockets). */
  volumes: k8s.V1Volume[];
  volumeMounts: k8s.V1VolumeMount[];
}

interface GatewayObject extends k8s.KubernetesObject {
  spec?: { gatewayClassName?: string; listeners?: { name?: string; port?: number; protocol?: string }[] };
  status?: { conditions?: k8s.V1Condition[] };
}

export class WaypointDeployer {
  private readonly kc: k8s.KubeConfig;
  private readonly template: WaypointTemplate;
  private readonly clusterDomain: string;
  private readonly trustDomain: string;
  /** "ns/name" → the digest of the status last written, so an unchanged status is not rewritten. */
  private readonly written = new Map<string, string>();
  private classChecked = false;
  /** Gateway uids whose ServiceAccount exists: checked once, not on every model build. */
  private readonly accounts = new Set<string>();

  constructor(kc: k8s.KubeConfig, template: WaypointTemplate, opts: { clusterDomain: string; trustDomain: string }) {
    this.kc = kc;
    this.template = template;
    this.clusterDomain = opts.clusterDomain;
    this.trustDomain = opts.trustDomain;
  }

  /** Brings every waypoint's objects and status in line with its Gateway. Errors are logged per Gateway. */
  async reconcile(gateways: readonly k8s.KubernetesObject[], deployments: readonly k8s.V1Deployment[], services: readonly k8s.V1Service[]): Promise<void> {
    const ours = (gateways as GatewayObject[]).filter((g) => g.spec?.gatewayClassName === WAYPOINT_CLASS);
    if (ours.length > 0 && !this.classChecked) await this.ensureClass();
    for (const gw of ours) {
      const key = `${gw.metadata?.namespace}/${gw.metadata?.name}`;
      try {
        await this.reconcileOne(gw, deployments, services);
      } catch (e) {
        log.warn({ gateway: key, err: (e as Error).message }, 'deploying the waypoint failed; retrying on the next change');
      }
    }
  }

  private async ensureClass(): Promise<void> {
    const custom = this.kc.makeApiClient(k8s.CustomObjectsApi);
    const body = {
      apiVersion: `${GATEWAY_API}/v1`,
      kind: 'GatewayClass',
      metadata: { name: WAYPOINT_CLASS, labels: { 'app.kubernetes.io/managed-by': 'mesh' }, ...installOwner() },
      spec: { controllerName: WAYPOINT_CONTROLLER_NAME, description: 'Mesh waypoints: per-namespace L7 proxies (HBONE on 15008)' },
    };
    try {
      await custom.createClusterCustomObject({ group: GATEWAY_API, version: 'v1', plural: 'gatewayclasses', body });
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
    }
    const status = { conditions: [cond('Accepted', true, 'Accepted', `handled by ${WAYPOINT_CONTROLLER_NAME}`, 1)] };
    await custom.patchClusterCustomObjectStatus(
      { group: GATEWAY_API, version: 'v1', plural: 'gatewayclasses', name: WAYPOINT_CLASS, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    this.classChecked = true;
  }

  private async reconcileOne(gw: GatewayObject, deployments: readonly k8s.V1Deployment[], services: readonly k8s.V1Service[]): Promise<void> {
    const ns = gw.metadata!.namespace!;
    const name = gw.metadata!.name!;
    const gen = gw.metadata?.generation ?? 1;
    const listener = (gw.spec?.listeners ?? []).find((l) => l.protocol === 'HBONE' && l.port === HBONE_PORT);
    if (!listener) {
      const msg = `a waypoint needs a listener with protocol HBONE on port ${HBONE_PORT} (e.g. {name: mesh, port: ${HBONE_PORT}, protocol: HBONE})`;
      await this.writeStatus(gw, { accepted: cond('Accepted', false, 'UnsupportedValue', msg, gen), programmed: cond('Programmed', false, 'Invalid', msg, gen), addresses: [] });
      return;
    }
    const owner: k8s.V1OwnerReference = { apiVersion: `${GATEWAY_API}/v1`, kind: 'Gateway', name, uid: gw.metadata!.uid!, controller: true, blockOwnerDeletion: true };
    const labels = { [LABEL_GATEWAY_NAME]: name, 'gateway.istio.io/managed': 'mesh.io-waypoint', 'app.kubernetes.io/managed-by': 'mesh' };
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const apps = this.kc.makeApiClient(k8s.AppsV1Api);

    if (!this.accounts.has(owner.uid)) {
      await ensure(
        () => core.readNamespacedServiceAccount({ name, namespace: ns }),
        () => core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name, namespace: ns, labels, ownerReferences: [owner] } } }),
      );
      this.accounts.add(owner.uid);
    }

    const svcSpec: k8s.V1ServiceSpec = {
      selector: { [LABEL_GATEWAY_NAME]: name },
      ports: [
        { name: 'mesh', port: HBONE_PORT, targetPort: HBONE_PORT as unknown as k8s.IntOrString, protocol: 'TCP', appProtocol: 'all' },
        { name: 'status-port', port: WAYPOINT_READINESS_PORT, targetPort: WAYPOINT_READINESS_PORT as unknown as k8s.IntOrString, protocol: 'TCP' },
      ],
    };
    const svc = services.find((s) => s.metadata?.namespace === ns && s.metadata?.name === name);
    const svcHash = digest(svcSpec);
    if (!svc) {
      await core.createNamespacedService({ namespace: ns, body: { metadata: { name, namespace: ns, labels, annotations: { [SPEC_HASH]: svcHash }, ownerReferences: [owner] }, spec: svcSpec } }).catch(ignoreExists);
    } else if (svc.metadata?.annotations?.[SPEC_HASH] !== svcHash) {
      await core.replaceNamespacedService({ name, namespace: ns, body: { ...svc, metadata: { ...svc.metadata, labels: { ...svc.metadata?.labels, ...labels }, annotations: { ...svc.metadata?.annotations, [SPEC_HASH]: svcHash } }, spec: { ...svc.spec, ...svcSpec } } });
    }

    const podSpec = this.podSpec(ns, name);
    const depHash = digest(podSpec);
    const dep = deployments.find((d) => d.metadata?.namespace === ns && d.metadata?.name === name);
    const template: k8s.V1PodTemplateSpec = {
      // Waypoint pods terminate HBONE themselves: ztunnel must not capture them.
      metadata: { labels: { ...labels, [LABEL_DATAPLANE_MODE]: 'none' }, annotations: { [SPEC_HASH]: depHash } },
      spec: podSpec,
    };
    if (!dep) {
      await apps
        .createNamespacedDeployment({
          namespace: ns,
          body: { metadata: { name, namespace: ns, labels, annotations: { [SPEC_HASH]: depHash }, ownerReferences: [owner] }, spec: { replicas: 1, selector: { matchLabels: { [LABEL_GATEWAY_NAME]: name } }, template } },
        })
        .catch(ignoreExists);
      log.info({ gateway: `${ns}/${name}` }, 'deployed the waypoint');
    } else if (dep.metadata?.annotations?.[SPEC_HASH] !== depHash) {
      // Replicas stay as the user (or an autoscaler) set them.
      await apps.replaceNamespacedDeployment({ name, namespace: ns, body: { ...dep, metadata: { ...dep.metadata, annotations: { ...dep.metadata?.annotations, [SPEC_HASH]: depHash } }, spec: { ...dep.spec!, template } } });
      log.info({ gateway: `${ns}/${name}` }, 'updated the waypoint deployment');
    }

    const available = dep?.status?.availableReplicas ?? 0;
    const programmed =
      available > 0
        ? cond('Programmed', true, 'Programmed', `the waypoint deployment ${ns}/${name} has ${available} available replica${available === 1 ? '' : 's'}`, gen)
        : cond('Programmed', false, 'Pending', `waiting for the waypoint deployment ${ns}/${name} to have an available replica`, gen);
    const addresses = [{ type: 'Hostname', value: `${name}.${ns}.svc.${this.clusterDomain}` }];
    const ip = svc?.spec?.clusterIP;
    if (ip && ip !== 'None') addresses.unshift({ type: 'IPAddress', value: ip });
    await this.writeStatus(gw, { accepted: cond('Accepted', true, 'Accepted', 'the waypoint is accepted', gen), programmed, addresses });
  }

  private podSpec(ns: string, name: string): k8s.V1PodSpec {
    const t = this.template;
    const env: k8s.V1EnvVar[] = [
      { name: 'MESH_WAYPOINT_NAME', value: name },
      { name: 'MESH_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'MESH_POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'MESH_SERVICE_ACCOUNT', valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } } },
      { name: 'MESH_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'MESH_TRUST_DOMAIN', value: this.trustDomain },
      { name: 'MESH_TOKEN_FILE', value: `${TOKEN_DIR}/mesh-token` },
      { name: 'MESH_CA_ROOT_FILE', value: `${ROOT_DIR}/root-cert.pem` },
      // The process's own environment (glibc's tunables) under the template's, which may unset it.
      ...Object.entries({ ...WAYPOINT_PROCESS_ENV, ...t.env })
        .filter(([k, v]) => v !== '' || !(k in WAYPOINT_PROCESS_ENV))
        .map(([k, v]) => ({ name: k, value: v })),
    ];
    return {
      serviceAccountName: name,
      terminationGracePeriodSeconds: drainGraceSeconds(t.env),
      containers: [
        {
          name: 'waypoint',
          image: t.image,
          imagePullPolicy: t.imagePullPolicy,
          ...(t.command.length ? { command: t.command } : {}),
          // V8's flags first (WAYPOINT_NODE_FLAGS says why), then the entry.
          args: [...(t.nodeFlags ?? WAYPOINT_NODE_FLAGS), t.entry ?? WAYPOINT_ENTRY],
          env,
          ports: [
            { name: 'mesh', containerPort: HBONE_PORT, protocol: 'TCP' },
            { name: 'metrics', containerPort: WAYPOINT_METRICS_PORT, protocol: 'TCP' },
            { name: 'status-port', containerPort: WAYPOINT_READINESS_PORT, protocol: 'TCP' },
          ],
          readinessProbe: { httpGet: { path: '/healthz/ready', port: WAYPOINT_READINESS_PORT as unknown as k8s.IntOrString }, periodSeconds: 1, failureThreshold: 3 },
          volumeMounts: [{ name: 'mesh-token', mountPath: TOKEN_DIR, readOnly: true }, { name: 'mesh-ca-root', mountPath: ROOT_DIR, readOnly: true }, ...t.volumeMounts],
        },
      ],
      volumes: [
        { name: 'mesh-token', projected: { sources: [{ serviceAccountToken: { path: 'mesh-token', audience: CA_TOKEN_AUDIENCE, expirationSeconds: 3600 } }] } },
        { name: 'mesh-ca-root', configMap: { name: 'mesh-ca-root-cert' } },
        ...t.volumes,
      ],
    };
  }

  private async writeStatus(gw: GatewayObject, s: { accepted: k8s.V1Condition; programmed: k8s.V1Condition; addresses: { type: string; value: string }[] }): Promise<void> {
    const key = `${gw.metadata?.namespace}/${gw.metadata?.name}`;
    const old = gw.status?.conditions ?? [];
    const keep = (c: k8s.V1Condition): k8s.V1Condition => {
      const prev = old.find((o) => o.type === c.type);
      return prev && prev.status === c.status ? { ...c, lastTransitionTime: prev.lastTransitionTime } : c;
    };
    const conditions = [keep(s.accepted), keep(s.programmed)];
    const listeners = (gw.spec?.listeners ?? []).map((l) => ({
      name: l.name ?? '',
      supportedKinds: [],
      attachedRoutes: 0,
      conditions: [keep(cond('Accepted', s.accepted.status === 'True', s.accepted.reason, s.accepted.message, s.accepted.observedGeneration ?? 1)), keep(cond('Programmed', s.programmed.status === 'True', s.programmed.reason, s.programmed.message, s.programmed.observedGeneration ?? 1))],
    }));
    const status = { addresses: s.addresses, conditions, listeners };
    const d = JSON.stringify({ ...status, conditions: conditions.map((c) => ({ ...c, lastTransitionTime: undefined })), listeners: listeners.length });
    const same = JSON.stringify({ addresses: (gw.status as { addresses?: unknown } | undefined)?.addresses ?? [], conditions: old.map((c) => ({ ...c, lastTransitionTime: undefined })), listeners: listeners.length });
    if (this.written.get(key) === d || d === same) return;
    const custom = this.kc.makeApiClient(k8s.CustomObjectsApi);
    await custom.patchNamespacedCustomObjectStatus(
      { group: GATEWAY_API, version: 'v1', namespace: gw.metadata!.namespace!, plural: 'gateways', name: gw.metadata!.name!, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    this.written.set(key, d);
  }
}

function cond(type: string, ok: boolean, reason: string, message: string, observedGeneration: number): k8s.V1Condition {
  return { type, status: ok ? 'True' : 'False', reason, message, observedGeneration, lastTransitionTime: new Date() };
}

function digest(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

async function ensure(read: () => Promise<unknown>, create: () => Promise<unknown>): Promise<void> {
  try {
    await read();
  } catch (e) {
    if ((e as { code?: number }).code !== 404) throw e;
    await create().catch(ignoreExists);
  }
}

function ignoreExists(e: unknown): void {
  if ((e as { code?: number }).code !== 409) throw e;
}
