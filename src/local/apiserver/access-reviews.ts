// authorization.k8s.io/v1: SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview,
// LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i --list`), answered by
// the RBAC authorizer. kubectl sends these as protobuf (read by protobuf.ts); answers are JSON,
// which kubectl also accepts.
import type { IncomingMessage } from 'node:http';
import { ApiError, BadRequestError, InvalidError, RequestTooLargeError } from './errors.ts';
import { decodeProtobuf, PROTOBUF } from './protobuf.ts';
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
  if (type === PROTOBUF) return decodeProtobuf(raw, ['application/json', PROTOBUF]);
  if (type && type !== 'application/json' && type !== 'application/yaml') {
    throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, ${PROTOBUF} (got "${type}")`);
  }
  try {
    const v: unknown = JSON.parse(raw.toString('utf8') || '{}');
    if (!isObject(v)) throw new Error('not an object');
    return v;
  } catch (err) {
    throw new BadRequestError(`the request body is not a valid ${kind}: ${(err as Error).message}`);
  }
}
