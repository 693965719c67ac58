// The HTTP face: authentication, routing of Kubernetes API paths, content negotiation (JSON,
// Table, PartialObjectMetadata), body parsing, and metav1.Status errors.
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import * as yaml from 'js-yaml';
import { logger } from '../../common/log.ts';
import { accessReview } from './access-reviews.ts';
import { apiGroup, apiGroupList, apiVersions, openApiDocument, openApiRoot, versionInfo } from './discovery.ts';
import { ApiError, BadRequestError, MethodNotAllowedError, NotFoundError, RequestTooLargeError, UnauthorizedError, UnsupportedMediaTypeError } from './errors.ts';
import { decodeProtobuf, PROTOBUF } from './protobuf.ts';
import { type Authorizer, requestAttributes } from './rbac.ts';
import { rbacAdmission } from './rbac-policy.ts';
import { parseFieldValidation, scaleOf, withReplicas } from './customresources.ts';
import { jsonPatch, mergePatch } from './patch.ts';
import type { PatchType, Registry } from './registry.ts';
import { type ResourceDef, apiVersionOf, resourceKey } from './resources.ts';
import { type Matcher, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { type IncludeObject, toTable } from './tables.ts';
import type { Tokens, UserInfo } from './tokens.ts';
import { isObject, type JsonObject, type KubeObject } from './types.ts';
import { getScale, patchScale, updateScale } from './scale.ts';
import { servePortForward } from './portforward.ts';
import { type PodStreams, serveExec, serveLog, STREAMING_SUBRESOURCES } from './streaming.ts';
import { serveWatch, type WatchSettings } from './watch.ts';

const log = logger('apiserver');
const MAX_BODY = 3 * 1024 * 1024; // kube-apiserver's default request size limit

export interface HandlerContext {
  registry: Registry;
  tokens: Tokens;
  authorizer: Authorizer;
  version: { major: number; minor: number };
  watch: WatchSettings;
  /** Longest watch when the client sets no timeoutSeconds (kube-apiserver: 30–60 min). */
  maxWatchSeconds: number;
  watches: Set<() => void>;
  /** The kubelets' side of pods/log, exec and attach (streaming.ts); unset without nodes. */
  streams?: PodStreams;
}

const PATCH_TYPES: Record<string, PatchType> = {
  'application/merge-patch+json': 'merge',
  'application/strategic-merge-patch+json': 'strategic',
  'application/json-patch+json': 'json',
  'application/apply-patch+yaml': 'apply',
};

interface Route {
  def: ResourceDef;
  namespace: string | undefined;
  name: string | undefined;
  subresource: string | undefined;
}

export function createHandler(ctx: HandlerContext): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(ctx, req, res).catch((err: unknown) => {
      const apiErr = err instanceof ApiError ? err : undefined;
      if (!apiErr) log.error({ err, method: req.method, url: req.url }, 'request failed');
      else log.debug({ method: req.method, url: req.url, code: apiErr.httpStatus, reason: apiErr.reason }, 'request rejected');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const status = apiErr?.toStatus() ?? new ApiError(500, 'InternalError', `Internal error occurred: ${err instanceof Error ? err.message : String(err)}`).toStatus();
      send(res, (status.code as number) ?? 500, status);
    });
  };
}

async function handle(ctx: HandlerContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://apiserver');
  const path = url.pathname.replace(/\/+$/, '') || '/';
  const method = req.method ?? 'GET';

  // Public endpoints (system:public-info-viewer on a real cluster).
  if (method === 'GET' && path === '/version') return send(res, 200, versionInfo(ctx.version));
  if (method === 'GET' && /^\/(healthz|livez|readyz)(\/.*)?$/.test(path)) {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('ok');
    return;
  }

  const user = authorize(ctx, req, method, path, url.searchParams);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (method === 'GET') {
    if (path === '/api') return send(res, 200, apiVersions());
    const kinds = ctx.registry.kinds;
    if (path === '/apis') return send(res, 200, apiGroupList(kinds));
    if (path === '/api/v1') return send(res, 200, kinds.resourceList('', 'v1'));
    if (parts[0] === 'apis' && parts.length === 2) {
      const g = apiGroup(kinds, parts[1]!);
      if (!g) throw new NotFoundError('', 'groups', parts[1]!);
      return send(res, 200, g);
    }
    if (parts[0] === 'apis' && parts.length === 3 && kinds.hasGroupVersion(parts[1]!, parts[2]!)) {
      return send(res, 200, kinds.resourceList(parts[1]!, parts[2]!));
    }
    if (path === '/openapi/v3') return send(res, 200, openApiRoot(kinds));
    if (parts[0] === 'openapi' && parts[1] === 'v3') {
      const gv = parts[2] === 'api' ? { group: '', version: parts[3] } : { group: parts[3], version: parts[4] };
      if (kinds.hasGroupVersion(gv.group!, gv.version!) && parts.length === (gv.group ? 5 : 4)) {
        return send(res, 200, openApiDocument(kinds, gv.group!, gv.version!));
      }
    }
  }

  const route = parseRoute(ctx.registry, parts);
  if (!route) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${method} ${path})`, {});
  return serveResource(ctx, req, res, url, route, method, user);
}

/** Authentication, then RBAC (rbac.ts) before routing, as kube-apiserver's filters do: an unknown path is a 403 too. */
function authorize(ctx: HandlerContext, req: IncomingMessage, method: string, path: string, q: URLSearchParams): UserInfo {
  const auth = req.headers.authorization;
  const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
  const authn = token ? ctx.tokens.authenticate(token, ctx.registry.uidLookup) : undefined;
  if (!authn) throw new UnauthorizedError();
  const user = ctx.authorizer.impersonate(authn.user, req.headers);
  ctx.authorizer.check(requestAttributes(user, method, path, q));
  return user;
}

/** Upgrade requests (exec, attach, port-forward): authorized as any request, then streaming.ts. */
export function createUpgradeHandler(ctx: HandlerContext): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'https://apiserver');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    void (async () => {
      authorize(ctx, req, req.method ?? 'GET', path, url.searchParams);
      const route = parseRoute(ctx.registry, path.split('/').filter(Boolean).map(decodeURIComponent));
      const sub = route?.subresource;
      if (!route || route.def.kind !== 'Pod' || route.def.group !== '' || !route.name || !sub || !['exec', 'attach', 'portforward'].includes(sub)) {
        throw new BadRequestError(`${req.method} ${path}: this server upgrades only pods/exec, pods/attach and pods/portforward`);
      }
      const pod = ctx.registry.get(route.def, route.namespace, route.name);
      if (sub === 'portforward') return servePortForward(ctx.streams, pod, req, socket, head);
      serveExec(ctx.streams, pod, sub, req, socket, head, url.searchParams);
    })().catch((err: unknown) => {
      const apiErr = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `Internal error occurred: ${err instanceof Error ? err.message : String(err)}`);
      if (!(err instanceof ApiError)) log.error({ err, url: req.url }, 'upgrade failed');
      const text = JSON.stringify(apiErr.toStatus());
      if (!socket.writable) return;
      socket.end(`HTTP/1.1 ${apiErr.httpStatus} ${STATUS_CODES[apiErr.httpStatus] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    });
  };
}

/** /api/v1/… or /apis/{g}/{v}/…, then [namespaces/{ns}/]{resource}[/{name}[/{sub}]]. */
function parseRoute(registry: Registry, parts: string[]): Route | undefined {
  const findResource = (g: string, v: string, plural: string) => registry.kinds.find(g, v, plural);
  let group: string;
  let version: string;
  let rest: string[];
  if (parts[0] === 'api' && parts[1]) [group, version, rest] = ['', parts[1], parts.slice(2)];
  else if (parts[0] === 'apis' && parts[1] && parts[2]) [group, version, rest] = [parts[1], parts[2], parts.slice(3)];
  else return undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const def = findResource(group, version, rest[2]!);
    if (def?.namespaced && rest.length <= 5) return { def, namespace: rest[1], name: rest[3], subresource: rest[4] };
  }
  const def = findResource(group, version, rest[0] ?? '');
  if (!def || rest.length > 3) return undefined;
  return { def, namespace: undefined, name: rest[1], subresource: rest[2] };
}

async function serveResource(ctx: HandlerContext, req: IncomingMessage, res: ServerResponse, url: URL, r: Route, method: string, user: UserInfo): Promise<void> {
  const { def, name, subresource: sub } = r;
  const ns = def.namespaced ? r.namespace : undefined;
  const q = url.searchParams;
  const dryRun = q.getAll('dryRun').includes('All');
  const reg = ctx.registry;
  const admit = rbacAdmission(ctx.authorizer, user, def, reg); // a role or binding may not escalate
  // Unknown fields of custom resources become Warning headers (fieldValidation=Warn, the default).
  const warnings: string[] = [];
  const fieldValidation = parseFieldValidation(q.get('fieldValidation'));
  const write = { dryRun, admit, fieldValidation, warnings };
  const warn = () => {
    if (warnings.length) res.setHeader('Warning', warnings.map((w) => `299 - ${JSON.stringify(w)}`));
  };
  if (sub && !def.subresources.includes(sub)) throw new ApiError(404, 'NotFound', `the server could not find the requested resource: ${def.plural}/${sub}`, {});
  if (def.namespaced && name && ns === undefined) throw new ApiError(404, 'NotFound', `the server could not find the requested resource: ${def.plural} is namespaced; use /namespaces/{namespace}/${def.plural}/${name}`, {});

  if (def.createOnly) {
    if (method !== 'POST' || name) throw new MethodNotAllowedError(method, url.pathname);
    if (def.kind !== 'TokenReview') return send(res, 201, await accessReview(ctx.authorizer, def, user, ns, req));
    return send(res, 201, reg.tokenReview(await readBody(req)));
  }

  if (!name) {
    const match = selectors(q, def);
    if (method === 'GET') {
      if (q.get('watch') === 'true' || q.get('watch') === '1') return startWatch(ctx, req, res, def, ns, match ?? (() => true), q);
      const list = reg.list(def, ns, { match, limit: Number(q.get('limit') ?? 0) || undefined, continueToken: q.get('continue') || undefined });
      const meta: JsonObject = { resourceVersion: list.resourceVersion, ...(list.continueToken ? { continue: list.continueToken, remainingItemCount: list.remainingItemCount } : {}) };
      const table = wantsTable(req, q);
      if (table) return send(res, 200, toTable(def, list.items, table, meta));
      if (wantsPartial(req)) return send(res, 200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: meta, items: list.items.map(partial) });
      return send(res, 200, { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata: meta, items: list.items });
    }
    if (method === 'POST') {
      if (def.namespaced && ns === undefined) throw new MethodNotAllowedError(method, url.pathname);
      const created = await reg.create(def, ns, await readBody(req), write);
      warn();
      return send(res, 201, created);
    }
    if (method === 'DELETE') {
      const items = await reg.deleteCollection(def, ns, match, { dryRun });
      return send(res, 200, { kind: `${def.kind}List`, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(reg.store.resourceVersion) }, items });
    }
    throw new MethodNotAllowedError(method, url.pathname);
  }

  if (sub === 'binding') {
    if (method !== 'POST') throw new MethodNotAllowedError(method, url.pathname);
    await reg.bind(ns!, name, await readBody(req));
    return send(res, 201, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 });
  }
  if (sub === 'token') {
    if (method !== 'POST') throw new MethodNotAllowedError(method, url.pathname);
    return send(res, 201, reg.tokenRequest(ns!, name, await readBody(req)));
  }

  if (sub === 'log' && method === 'GET') return serveLog(ctx.streams, reg.get(def, ns, name), req, res, q);
  if (sub && sub in STREAMING_SUBRESOURCES) throw new BadRequestError(`${def.plural}/${sub} needs a WebSocket upgrade (kubectl 1.30 or later)`);
  if (sub === 'scale') return def.crd ? serveCustomScale(ctx, req, res, url, def, ns, name, method, dryRun) : serveScale(req, res, reg, def, ns, name, method, dryRun, url.pathname);
  const opts = { ...write, ...(sub ? { subresource: sub } : {}) };
  switch (method) {
    case 'GET': {
      const obj = reg.get(def, ns, name);
      const table = wantsTable(req, q);
      if (table) return send(res, 200, toTable(def, [obj], table, { resourceVersion: obj.metadata.resourceVersion }));
      if (wantsPartial(req)) return send(res, 200, partial(obj));
      return send(res, 200, obj);
    }
    case 'PUT': {
      const updated = await reg.update(def, ns, name, await readBody(req), opts);
      warn();
      return send(res, 200, updated);
    }
    case 'PATCH': {
      const type = PATCH_TYPES[mediaType(req)];
      if (!type) throw new UnsupportedMediaTypeError(mediaType(req), Object.keys(PATCH_TYPES));
      const body = await readBody(req, type === 'apply');
      const { object, created } = await reg.patch(def, ns, name, type, body, opts);
      warn();
      return send(res, created ? 201 : 200, object);
    }
    case 'DELETE': {
      if (sub) throw new MethodNotAllowedError(method, url.pathname);
      let raw = await readBody(req).catch(() => undefined);
      // DeleteOptions may come as query parameters too (client-go sends a body; curl users do not).
      const grace = url.searchParams.get('gracePeriodSeconds');
      if (grace !== null) raw = { ...(isObject(raw) ? raw : {}), gracePeriodSeconds: grace };
      const gone = await reg.delete(def, ns, name, raw, { dryRun });
      // 202 when the object lingers for its finalizers (the apiserver's delete handler does so).
      const lingers = !dryRun && reg.store.get(resourceKey(def), ns ?? '', name)?.metadata.uid === gone.metadata.uid;
      return send(res, lingers ? 202 : 200, gone);
    }
    default:
      throw new MethodNotAllowedError(method, url.pathname);
  }
}

async function serveScale(req: IncomingMessage, res: ServerResponse, reg: Registry, def: ResourceDef, ns: string | undefined, name: string, method: string, dryRun: boolean, path: string): Promise<void> {
  if (method === 'GET') return send(res, 200, getScale(reg, def, ns, name));
  if (method === 'PUT') return send(res, 200, await updateScale(reg, def, ns, name, await readBody(req), dryRun));
  if (method !== 'PATCH') throw new MethodNotAllowedError(method, path);
  const type = PATCH_TYPES[mediaType(req)];
  if (!type) throw new UnsupportedMediaTypeError(mediaType(req), Object.keys(PATCH_TYPES));
  return send(res, 200, await patchScale(reg, def, ns, name, type, await readBody(req, type === 'apply'), dryRun));
}

/** {name}/scale of a custom resource: an autoscaling/v1 Scale read from and written to its paths. */
async function serveCustomScale(ctx: HandlerContext, req: IncomingMessage, res: ServerResponse, url: URL, def: ResourceDef, ns: string | undefined, name: string, method: string, dryRun: boolean): Promise<void> {
  const reg = ctx.registry;
  const current = reg.get(def, ns, name);
  if (method === 'GET') return send(res, 200, scaleOf(def, current));
  let scale: unknown;
  if (method === 'PUT') scale = await readBody(req);
  else if (method === 'PATCH') {
    const type = PATCH_TYPES[mediaType(req)];
    if (!type) throw new UnsupportedMediaTypeError(mediaType(req), Object.keys(PATCH_TYPES));
    const body = await readBody(req, type === 'apply');
    const base = scaleOf(def, current);
    scale = type === 'json' ? jsonPatch(base, body, { group: 'autoscaling', kind: 'Scale', name }) : mergePatch(base, body);
  } else throw new MethodNotAllowedError(method, url.pathname);
  const next = withReplicas(def, current, scale);
  const updated = await reg.update(def, ns, name, next, { dryRun, subresource: 'scale' });
  return send(res, 200, scaleOf(def, updated));
}

function startWatch(ctx: HandlerContext, req: IncomingMessage, res: ServerResponse, def: ResourceDef, ns: string | undefined, match: Matcher, q: URLSearchParams): void {
  const requested = Number(q.get('timeoutSeconds') ?? 0);
  const timeoutSeconds = requested > 0 ? Math.min(requested, ctx.maxWatchSeconds) : ctx.maxWatchSeconds * (1 + Math.random()) * 0.5 + ctx.maxWatchSeconds * 0.5;
  let ended = false;
  let stop: (() => void) | undefined = undefined;
  stop = serveWatch(
    ctx.registry.store,
    res,
    { def, namespace: ns, match, resourceVersion: q.get('resourceVersion') ?? '', timeoutSeconds, bookmarks: q.get('allowWatchBookmarks') === 'true', table: wantsTable(req, q), sendInitialEvents: q.get('sendInitialEvents') === 'true' },
    ctx.watch,
    () => {
      ended = true;
      if (stop) ctx.watches.delete(stop);
    },
  );
  // A watch can end before serveWatch returns (410, or a client already too far behind).
  if (!ended) ctx.watches.add(stop);
  // A custom kind's watches end when its CRD is deleted (after its objects' DELETED events).
  if (!ended && def.crd) {
    const key = resourceKey(def);
    const off = ctx.registry.kinds.onRemoved((r) => r === key && stop?.());
    res.on('close', off);
  }
}

function selectors(q: URLSearchParams, def: ResourceDef): Matcher | undefined {
  const ls = q.get('labelSelector');
  const fs = q.get('fieldSelector');
  const l = ls ? parseLabelSelector(ls) : undefined;
  const f = fs ? parseFieldSelector(fs, def) : undefined;
  if (!l && !f) return undefined;
  return (o) => (!l || l(o)) && (!f || f(o));
}

/** Table when Accept asks for as=Table in meta.k8s.io (kubectl get's first choice). */
function wantsTable(req: IncomingMessage, q: URLSearchParams): IncludeObject | undefined {
  const accept = req.headers.accept ?? '';
  if (!accept.split(',').some((a) => /;\s*as=Table/.test(a) && /;\s*g=meta\.k8s\.io/.test(a))) return undefined;
  const inc = q.get('includeObject');
  return inc === 'None' || inc === 'Object' ? inc : 'Metadata';
}

function wantsPartial(req: IncomingMessage): boolean {
  const accept = (req.headers.accept ?? '').split(',')[0] ?? '';
  return /;\s*as=PartialObjectMetadata/.test(accept);
}

const partial = (o: KubeObject): JsonObject => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata });

function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Body media types readBody parses ('' is a body sent without a Content-Type: JSON). */
const READABLE = ['application/json', 'application/yaml', PROTOBUF, ...Object.keys(PATCH_TYPES)];

/** Reads and parses the body: JSON, YAML for application/yaml and apply patches, or Kubernetes protobuf. */
async function readBody(req: IncomingMessage, yamlAllowed = false): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new RequestTooLargeError(MAX_BODY);
    chunks.push(chunk as Buffer);
  }
  const type = mediaType(req);
  if (type === PROTOBUF) return decodeProtobuf(Buffer.concat(chunks), READABLE);
  if (type && type !== 'application/x-yaml' && !READABLE.includes(type)) throw new UnsupportedMediaTypeError(type, READABLE);
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return undefined;
  if (yamlAllowed || type === 'application/yaml' || type === 'application/x-yaml') {
    try {
      return yaml.load(text);
    } catch (err) {
      throw new BadRequestError(`the request body is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(`the request body is not valid JSON: ${(err as Error).message}`);
  }
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-cache, private' });
  res.end(text);
}

