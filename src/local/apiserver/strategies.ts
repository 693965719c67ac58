// Per-kind behaviour on write, after k8s.io/kubernetes/pkg/registry/*/strategy.go: defaults and
// status reset on create, validation, immutable fields on update.
import { crdStrategy } from './crds.ts';
import { validateOwnerReferences } from './gc.ts';
import { RBAC_STRATEGIES } from './rbac-policy.ts';
import { workloadStrategies } from './workloads.ts';
import { Causes, expectArray, expectObject, expectStringMap, isDns1123Label, isIpOrCidr, isPort, validateMeta } from './validate.ts';
import { deepEqual, isObject, type JsonObject, type KubeObject } from './types.ts';

export interface Strategy {
  nameRule: 'subdomain' | 'label' | 'dns1035' | 'path';
  /** Defaults and reset fields on create (mutates). */
  prepareForCreate?(obj: KubeObject): void;
  /** Defaults on update (mutates), so a PUT without them does not look like a spec change. */
  prepareForUpdate?(obj: KubeObject, old: KubeObject): void;
  validate?(obj: KubeObject, c: Causes, old?: KubeObject): void;
}

const PROTOCOLS = ['TCP', 'UDP', 'SCTP'];

function validateContainers(c: Causes, list: unknown, field: string, required: boolean): void {
  const containers = expectArray(c, list, field);
  if (required && containers.length === 0) c.required(field, 'a pod needs at least one container');
  const seen = new Set<string>();
  containers.forEach((raw, i) => {
    const f = `${field}[${i}]`;
    const ct = expectObject(c, raw, f);
    if (!ct) return;
    if (typeof ct.name !== 'string' || ct.name === '') c.required(`${f}.name`);
    else if (!isDns1123Label(ct.name)) c.invalid(`${f}.name`, ct.name, 'a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \'-\'');
    else if (seen.has(ct.name)) c.duplicate(`${f}.name`, ct.name);
    else seen.add(ct.name);
    if (typeof ct.image !== 'string' || ct.image === '') c.required(`${f}.image`);
    for (const k of ['command', 'args'] as const) {
      expectArray(c, ct[k], `${f}.${k}`).forEach((s, j) => {
        if (typeof s !== 'string') c.typeInvalid(`${f}.${k}[${j}]`, s, 'a string');
      });
    }
    expectArray(c, ct.ports, `${f}.ports`).forEach((p, j) => {
      const port = expectObject(c, p, `${f}.ports[${j}]`);
      if (!port) return;
      if (!isPort(port.containerPort)) c.invalid(`${f}.ports[${j}].containerPort`, port.containerPort, 'must be between 1 and 65535, inclusive');
      if (port.protocol !== undefined && !PROTOCOLS.includes(port.protocol as string)) c.unsupported(`${f}.ports[${j}].protocol`, port.protocol, PROTOCOLS);
    });
    expectArray(c, ct.env, `${f}.env`).forEach((e, j) => {
      const env = expectObject(c, e, `${f}.env[${j}]`);
      if (env && (typeof env.name !== 'string' || env.name === '')) c.required(`${f}.env[${j}].name`);
      if (env && env.value !== undefined && typeof env.value !== 'string') c.typeInvalid(`${f}.env[${j}].value`, env.value, 'a string');
    });
  });
}

const pod: Strategy = {
  nameRule: 'subdomain',
  prepareForCreate(obj) {
    const spec = (obj.spec ??= {}) as JsonObject;
    spec.restartPolicy ??= 'Always';
    spec.dnsPolicy ??= 'ClusterFirst';
    spec.schedulerName ??= 'default-scheduler';
    spec.terminationGracePeriodSeconds ??= 30;
    spec.serviceAccountName ??= 'default';
    spec.serviceAccount ??= spec.serviceAccountName; // deprecated alias, still set by the real server
    for (const ct of expectArray(new Causes(), spec.containers, '')) {
      if (isObject(ct)) for (const p of expectArray(new Causes(), ct.ports, '')) if (isObject(p)) p.protocol ??= 'TCP';
    }
    obj.status = { phase: 'Pending' };
  },
  validate(obj, c, old) {
    const spec = expectObject(c, obj.spec, 'spec');
    if (!spec) return c.required('spec');
    validateContainers(c, spec.containers, 'spec.containers', true);
    validateContainers(c, spec.initContainers, 'spec.initContainers', false);
    const rp = spec.restartPolicy;
    if (rp !== undefined && !['Always', 'OnFailure', 'Never'].includes(rp as string)) c.unsupported('spec.restartPolicy', rp, ['Always', 'OnFailure', 'Never']);
    if (old) {
      const oldSpec = (old.spec ?? {}) as JsonObject;
      if (oldSpec.nodeName && spec.nodeName !== oldSpec.nodeName) c.forbidden('spec.nodeName', 'pod updates may not change nodeName once set (use the binding subresource to schedule)');
      if (!deepEqual(stripMutable(spec), stripMutable(oldSpec))) {
        c.forbidden('spec', 'pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`');
      }
    }
  },
};

/** The pod spec without the fields a real server lets an update change. */
function stripMutable(spec: JsonObject): JsonObject {
  const { activeDeadlineSeconds: _a, tolerations: _t, terminationGracePeriodSeconds: _g, nodeName: _n, ...rest } = spec;
  const images = (l: unknown) => (Array.isArray(l) ? l.map((c) => (isObject(c) ? { ...c, image: undefined } : c)) : l);
  return { ...rest, containers: images(rest.containers), initContainers: images(rest.initContainers) };
}

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];

const service: Strategy = {
  nameRule: 'dns1035',
  prepareForCreate(obj) {
    const spec = (obj.spec ??= {}) as JsonObject;
    spec.type ??= 'ClusterIP';
    spec.sessionAffinity ??= 'None';
    for (const p of expectArray(new Causes(), spec.ports, '')) {
      if (!isObject(p)) continue;
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port;
    }
    obj.status = { loadBalancer: {} };
  },
  validate(obj, c, old) {
    const spec = expectObject(c, obj.spec, 'spec');
    if (!spec) return c.required('spec');
    if (!SERVICE_TYPES.includes(spec.type as string)) c.unsupported('spec.type', spec.type, SERVICE_TYPES);
    const headless = spec.clusterIP === 'None';
    const ports = expectArray(c, spec.ports, 'spec.ports');
    if (ports.length === 0 && !headless && spec.type !== 'ExternalName') c.required('spec.ports');
    const names = new Set<string>();
    ports.forEach((raw, i) => {
      const f = `spec.ports[${i}]`;
      const p = expectObject(c, raw, f);
      if (!p) return;
      if (!isPort(p.port)) c.invalid(`${f}.port`, p.port, 'must be between 1 and 65535, inclusive');
      if (p.protocol !== undefined && !PROTOCOLS.includes(p.protocol as string)) c.unsupported(`${f}.protocol`, p.protocol, PROTOCOLS);
      const tp = p.targetPort;
      if (tp !== undefined && !isPort(tp) && !(typeof tp === 'string' && /^[a-z0-9-]{1,15}$/.test(tp))) c.invalid(`${f}.targetPort`, tp, 'must be a port number (1-65535) or an IANA_SVC_NAME');
      if (ports.length > 1 && (typeof p.name !== 'string' || p.name === '')) c.required(`${f}.name`, 'ports must be named when a service has more than one');
      if (typeof p.name === 'string' && p.name) {
        if (names.has(p.name)) c.duplicate(`${f}.name`, p.name);
        names.add(p.name);
      }
    });
    expectStringMap(c, spec.selector, 'spec.selector');
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '' && !isIpOrCidr(spec.clusterIP)) c.invalid('spec.clusterIP', spec.clusterIP, 'must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)');
    if (old) {
      const before = (old.spec as JsonObject | undefined)?.clusterIP;
      if (before !== undefined && spec.clusterIP !== undefined && spec.clusterIP !== before) c.invalid('spec.clusterIP', spec.clusterIP, 'field is immutable');
    }
  },
};

const namespace: Strategy = {
  nameRule: 'label',
  prepareForCreate(obj) {
    obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name! };
    obj.spec = { finalizers: ['kubernetes'] };
    obj.status = { phase: 'Active' };
  },
};

const node: Strategy = { nameRule: 'subdomain' };

const configMap: Strategy = {
  nameRule: 'subdomain',
  validate(obj, c) {
    expectStringMap(c, obj.data, 'data');
    expectStringMap(c, obj.binaryData, 'binaryData');
  },
};

const secret: Strategy = {
  nameRule: 'subdomain',
  prepareForCreate(obj) {
    obj.type ??= 'Opaque';
    // stringData is write-only: folded into data, base64-encoded (core/v1 Secret docs).
    if (isObject(obj.stringData)) {
      const data = (obj.data ??= {}) as JsonObject;
      for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v)).toString('base64');
      delete obj.stringData;
    }
  },
  validate(obj, c) {
    for (const [k, v] of Object.entries(expectObject(c, obj.data, 'data') ?? {})) {
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) c.invalid(`data[${k}]`, '<value omitted>', 'must be base64-encoded');
    }
  },
};

const endpointSlice: Strategy = {
  nameRule: 'subdomain',
  validate(obj, c) {
    const types = ['IPv4', 'IPv6', 'FQDN'];
    if (!types.includes(obj.addressType as string)) c.unsupported('addressType', obj.addressType, types);
    expectArray(c, obj.endpoints, 'endpoints').forEach((e, i) => {
      const ep = expectObject(c, e, `endpoints[${i}]`);
      const addrs = expectArray(c, ep?.addresses, `endpoints[${i}].addresses`);
      if (ep && addrs.length === 0) c.required(`endpoints[${i}].addresses`);
    });
    expectArray(c, obj.ports, 'ports').forEach((p, i) => {
      const port = expectObject(c, p, `ports[${i}]`);
      if (port?.port !== undefined && port.port !== null && !isPort(port.port)) c.invalid(`ports[${i}].port`, port.port, 'must be between 1 and 65535, inclusive');
    });
  },
};

const STRATEGIES: Record<string, Strategy> = {
  Pod: pod,
  Service: service,
  Namespace: namespace,
  Node: node,
  ConfigMap: configMap,
  Secret: secret,
  EndpointSlice: endpointSlice,
  ...workloadStrategies(() => pod),
  CustomResourceDefinition: crdStrategy,
  ...RBAC_STRATEGIES,
};

export function strategyFor(kind: string): Strategy {
  return STRATEGIES[kind] ?? { nameRule: 'subdomain' };
}

/** All causes against `obj` (metadata first), empty when valid. */
export function validateObject(obj: KubeObject, old?: KubeObject): Causes {
  const s = strategyFor(obj.kind);
  const c = new Causes();
  validateMeta(obj, c, s.nameRule);
  validateOwnerReferences(obj, c);
  s.validate?.(obj, c, old);
  return c;
}
