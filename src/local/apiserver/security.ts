// Structural validation of security.mesh.io/v1 AuthorizationPolicy and PeerAuthentication, shaped
// like Istio's security.istio.io/v1 (istio/api security/v1beta1/authorization.proto and
// peer_authentication.proto). Unknown fields are rejected rather than pruned: a typo in a policy
// silently widening access is the failure we most want to prevent.
import { type Causes, expectArray, expectObject, expectStringMap, expectStrings, isIpOrCidr, onlyKeys } from './validate.ts';
import type { JsonObject, KubeObject } from './types.ts';

export const AUTHZ_ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
export const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

const SOURCE_FIELDS = ['principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces', 'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts'];
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'];

function validateSelector(c: Causes, v: unknown, field: string): void {
  const sel = expectObject(c, v, field);
  if (!sel) return;
  onlyKeys(c, sel, field, ['matchLabels']);
  expectStringMap(c, sel.matchLabels, `${field}.matchLabels`);
}

function validateTargetRef(c: Causes, v: unknown, field: string): void {
  const ref = expectObject(c, v, field);
  if (!ref) return;
  onlyKeys(c, ref, field, ['group', 'kind', 'name', 'namespace']);
  for (const k of ['kind', 'name']) if (typeof ref[k] !== 'string' || ref[k] === '') c.required(`${field}.${k}`);
  for (const k of ['group', 'namespace']) if (ref[k] !== undefined && typeof ref[k] !== 'string') c.typeInvalid(`${field}.${k}`, ref[k], 'a string');
}

function validatePortString(c: Causes, s: string, field: string): void {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1 || n > 65535) c.invalid(field, s, 'must be a port number between 1 and 65535');
}

export function validateAuthorizationPolicy(obj: KubeObject, c: Causes): void {
  const spec = expectObject(c, obj.spec ?? {}, 'spec') ?? {};
  onlyKeys(c, spec, 'spec', ['selector', 'targetRef', 'targetRefs', 'action', 'provider', 'rules']);
  validateSelector(c, spec.selector, 'spec.selector');
  if (spec.targetRef !== undefined) validateTargetRef(c, spec.targetRef, 'spec.targetRef');
  expectArray(c, spec.targetRefs, 'spec.targetRefs').forEach((r, i) => validateTargetRef(c, r, `spec.targetRefs[${i}]`));
  if (spec.selector !== undefined && (spec.targetRef !== undefined || spec.targetRefs !== undefined)) {
    c.forbidden('spec.selector', 'only one of selector, targetRef or targetRefs may be set');
  }
  const action = spec.action ?? 'ALLOW';
  if (!AUTHZ_ACTIONS.includes(action as (typeof AUTHZ_ACTIONS)[number])) c.unsupported('spec.action', action, AUTHZ_ACTIONS);
  if (action === 'CUSTOM') {
    const p = expectObject(c, spec.provider, 'spec.provider');
    if (!p || typeof p.name !== 'string' || !p.name) c.required('spec.provider.name', 'action CUSTOM needs an extension provider');
    onlyKeys(c, p, 'spec.provider', ['name']);
  } else if (spec.provider !== undefined) {
    c.forbidden('spec.provider', 'provider is only allowed with action CUSTOM');
  }
  expectArray(c, spec.rules, 'spec.rules').forEach((r, i) => {
    const f = `spec.rules[${i}]`;
    const rule = expectObject(c, r, f);
    if (!rule) return;
    onlyKeys(c, rule, f, ['from', 'to', 'when']);
    expectArray(c, rule.from, `${f}.from`).forEach((fr, j) => {
      const ff = `${f}.from[${j}]`;
      const from = expectObject(c, fr, ff);
      onlyKeys(c, from, ff, ['source']);
      const src = expectObject(c, from?.source, `${ff}.source`);
      if (!src) return c.required(`${ff}.source`);
      onlyKeys(c, src, `${ff}.source`, SOURCE_FIELDS);
      if (Object.keys(src).length === 0) c.required(`${ff}.source`, 'a source needs at least one field');
      for (const k of SOURCE_FIELDS) {
        expectStrings(c, src[k], `${ff}.source.${k}`, k.toLowerCase().includes('ipblocks') ? (s, sf) => {
          if (!isIpOrCidr(s)) c.invalid(sf, s, 'must be an IP address or a CIDR range');
        } : undefined);
      }
    });
    expectArray(c, rule.to, `${f}.to`).forEach((tr, j) => {
      const tf = `${f}.to[${j}]`;
      const to = expectObject(c, tr, tf);
      onlyKeys(c, to, tf, ['operation']);
      const op = expectObject(c, to?.operation, `${tf}.operation`);
      if (!op) return c.required(`${tf}.operation`);
      onlyKeys(c, op, `${tf}.operation`, OPERATION_FIELDS);
      if (Object.keys(op).length === 0) c.required(`${tf}.operation`, 'an operation needs at least one field');
      for (const k of OPERATION_FIELDS) {
        expectStrings(c, op[k], `${tf}.operation.${k}`, k === 'ports' || k === 'notPorts' ? (s, sf) => validatePortString(c, s, sf) : undefined);
      }
    });
    expectArray(c, rule.when, `${f}.when`).forEach((wr, j) => {
      const wf = `${f}.when[${j}]`;
      const when = expectObject(c, wr, wf);
      if (!when) return;
      onlyKeys(c, when, wf, ['key', 'values', 'notValues']);
      if (typeof when.key !== 'string' || when.key === '') c.required(`${wf}.key`);
      expectStrings(c, when.values, `${wf}.values`);
      expectStrings(c, when.notValues, `${wf}.notValues`);
      if (!(when.values as unknown[] | undefined)?.length && !(when.notValues as unknown[] | undefined)?.length) c.required(`${wf}.values`, 'one of values or notValues must be set');
    });
  });
}

function validateMtls(c: Causes, v: unknown, field: string): void {
  const m = expectObject(c, v, field);
  if (!m) return;
  onlyKeys(c, m, field, ['mode']);
  if (m.mode !== undefined && !MTLS_MODES.includes(m.mode as (typeof MTLS_MODES)[number])) c.unsupported(`${field}.mode`, m.mode, MTLS_MODES);
}

export function validatePeerAuthentication(obj: KubeObject, c: Causes): void {
  const spec = (expectObject(c, obj.spec ?? {}, 'spec') ?? {}) as JsonObject;
  onlyKeys(c, spec, 'spec', ['selector', 'mtls', 'portLevelMtls']);
  validateSelector(c, spec.selector, 'spec.selector');
  validateMtls(c, spec.mtls, 'spec.mtls');
  const ports = expectObject(c, spec.portLevelMtls, 'spec.portLevelMtls');
  if (ports) {
    if (spec.selector === undefined) c.forbidden('spec.portLevelMtls', 'port-level mTLS needs a workload selector (as in Istio)');
    for (const [port, m] of Object.entries(ports)) {
      validatePortString(c, port, `spec.portLevelMtls[${port}]`);
      validateMtls(c, m, `spec.portLevelMtls[${port}]`);
    }
  }
}
