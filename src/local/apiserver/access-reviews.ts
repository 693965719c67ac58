// authorization.k8s.io/v1: SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
// LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i --list`), answered by
// the RBAC authorizer. kubectl sends these as protobuf, so their bodies are also read from the
// `k8s\0` envelope here (field numbers of k8s.io/api/authorization/v1/generated.proto); answers
// are JSON, which kubectl also accepts.
import type { IncomingMessage } from 'node:http';
import { ApiError, BadRequestError, InvalidError, RequestTooLargeError } from './errors.ts';
import type { Attributes, Authorizer, PolicyRule } from './rbac.ts';
import type { ResourceDef } from './resources.ts';
import type { UserInfo } from './tokens.ts';
import { isObject, type JsonObject } from './types.ts';

const GROUP = 'authorization.k8s.io';
const MAX_BODY = 1 << 20;

/** Answers a POST of one of the review kinds for `user` (already allowed to create it). */
export async function accessReview(authz: Authorizer, d: ResourceDef, user: UserInfo, namespace: string | undefined, req: IncomingMessage): Promise<JsonObject> {
  const body = await readReview(req, d.kind);
  const spec = isObject(body.spec) ? body.spec : {};
  const answer = (status: JsonObject): JsonObject => ({ kind: d.kind, apiVersion: `${GROUP}/v1`, metadata: { creationTimestamp: null, ...(namespace ? { namespace } : {}) }, spec, status });
  if (d.kind === 'SelfSubjectRulesReview') {
    const ns = typeof spec.namespace === 'string' ? spec.namespace : '';
    return answer(rulesStatus(authz.rulesFor(user, ns)));
  }
  let subject = user;
  if (d.kind === 'SubjectAccessReview' || d.kind === 'LocalSubjectAccessReview') {
    const groups = Array.isArray(spec.groups) ? spec.groups.map(String) : [];
    if (typeof spec.user !== 'string' || !spec.user) {
      if (!groups.length) throw new InvalidError(GROUP, d.kind, '', [{ reason: 'FieldValueInvalid', field: 'spec.user', message: 'Invalid value: "": at least one of user or group must be specified' }]);
    }
    subject = { username: typeof spec.user === 'string' ? spec.user : '', uid: typeof spec.uid === 'string' ? spec.uid : '', groups };
  }
  const a = attributesOf(d.kind, spec, subject);
  if (d.kind === 'LocalSubjectAccessReview' && a.namespace !== namespace) {
    throw new InvalidError(GROUP, d.kind, '', [{ reason: 'FieldValueInvalid', field: 'spec.resourceAttributes.namespace', message: `Invalid value: ${JSON.stringify(a.namespace)}: must match metadata.namespace` }]);
  }
  const decision = authz.authorize(a);
  return answer(decision.allowed ? { allowed: true, reason: decision.reason } : { allowed: false });
}

function attributesOf(kind: string, spec: JsonObject, user: UserInfo): Attributes {
  const r = isObject(spec.resourceAttributes) ? spec.resourceAttributes : undefined;
  const n = isObject(spec.nonResourceAttributes) ? spec.nonResourceAttributes : undefined;
  if (!r === !n) {
    throw new InvalidError(GROUP, kind, '', [
      r
        ? { reason: 'FieldValueInvalid', field: 'spec.nonResourceAttributes', message: 'Invalid value: cannot be specified in combination with resourceAttributes' }
        : { reason: 'FieldValueRequired', field: 'spec.resourceAttributes', message: 'Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified' },
    ]);
  }
  const s = (o: JsonObject, k: string): string => (typeof o[k] === 'string' ? (o[k] as string) : '');
  if (n) return { user, verb: s(n, 'verb'), resourceRequest: false, path: s(n, 'path'), namespace: '', apiGroup: '', apiVersion: '', resource: '', subresource: '', name: '' };
  return { user, verb: s(r!, 'verb'), resourceRequest: true, path: '', namespace: s(r!, 'namespace'), apiGroup: s(r!, 'group'), apiVersion: s(r!, 'version'), resource: s(r!, 'resource'), subresource: s(r!, 'subresource'), name: s(r!, 'name') };
}

/** The rules, merged by identical verbs and groups as far as it stays readable. */
function rulesStatus(rules: PolicyRule[]): JsonObject {
  const resourceRules: JsonObject[] = [];
  const nonResourceRules: JsonObject[] = [];
  for (const r of rules) {
    if (r.nonResourceURLs?.length) nonResourceRules.push({ verbs: r.verbs, nonResourceURLs: r.nonResourceURLs });
    else resourceRules.push({ verbs: r.verbs, apiGroups: r.apiGroups ?? [], resources: r.resources ?? [], ...(r.resourceNames?.length ? { resourceNames: r.resourceNames } : {}) });
  }
  return { resourceRules, nonResourceRules, incomplete: false };
}

async function readReview(req: IncomingMessage, kind: string): Promise<JsonObject> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RequestTooLargeError(MAX_BODY);
    chunks.push(chunk as Buffer);
  }
  const raw = Buffer.concat(chunks);
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/vnd.kubernetes.protobuf') return decodeReview(raw, kind);
  if (type && type !== 'application/json' && type !== 'application/yaml') {
    throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got "${type}")`);
  }
  try {
    const v: unknown = JSON.parse(raw.toString('utf8') || '{}');
    if (!isObject(v)) throw new Error('not an object');
    return v;
  } catch (err) {
    throw new BadRequestError(`the request body is not a valid ${kind}: ${(err as Error).message}`);
  }
}

// ---- protobuf: just the fields of the review requests ----

/** Length-delimited fields of one message by number (other wire types skipped). */
function fields(buf: Buffer): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let shift = 0;
    for (;;) {
      if (i >= buf.length) throw new BadRequestError('truncated protobuf body');
      const b = buf[i++]!;
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
      shift += 7;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const wire = key % 8;
    const num = Math.floor(key / 8);
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      if (i + len > buf.length) throw new BadRequestError('truncated protobuf body');
      out.set(num, [...(out.get(num) ?? []), buf.subarray(i, i + len)]);
      i += len;
    } else throw new BadRequestError(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

const str = (f: Map<number, Buffer[]>, n: number): string | undefined => f.get(n)?.[0]?.toString('utf8');
const strs = (f: Map<number, Buffer[]>, n: number): string[] => (f.get(n) ?? []).map((b) => b.toString('utf8'));

function compact(o: Record<string, unknown>): JsonObject {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== '' && !(Array.isArray(v) && !v.length))) as JsonObject;
}

/** `k8s\0` + runtime.Unknown{typeMeta=1, raw=2} whose raw is the review (spec = field 2). */
function decodeReview(buf: Buffer, kind: string): JsonObject {
  if (buf.length < 4 || buf.subarray(0, 4).toString('latin1') !== 'k8s\0') throw new BadRequestError('a protobuf body must start with the "k8s\\0" envelope');
  const unknown = fields(buf.subarray(4));
  const raw = unknown.get(2)?.[0] ?? Buffer.alloc(0);
  const spec = fields(fields(raw).get(2)?.[0] ?? Buffer.alloc(0));
  if (kind === 'SelfSubjectRulesReview') return { spec: compact({ namespace: str(spec, 1) }) };
  const ra = spec.get(1)?.[0];
  const na = spec.get(2)?.[0];
  const out: JsonObject = {};
  if (ra) {
    const r = fields(ra);
    out.resourceAttributes = compact({ namespace: str(r, 1), verb: str(r, 2), group: str(r, 3), version: str(r, 4), resource: str(r, 5), subresource: str(r, 6), name: str(r, 7) });
  }
  if (na) {
    const n = fields(na);
    out.nonResourceAttributes = compact({ path: str(n, 1), verb: str(n, 2) });
  }
  if (kind !== 'SelfSubjectAccessReview') Object.assign(out, compact({ user: str(spec, 3), groups: strs(spec, 4), uid: str(spec, 6) }));
  return { spec: out };
}
