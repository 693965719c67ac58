// The config stream's server: serves a ConfigStore to many clients over DeltaConfig with delta
// semantics (Envoy's incremental xDS): per stream and type it tracks what the client has, sends
// only differences, and learns from ACKs and NACKs.
//
// Per client there is no queue of messages. A change marks names dirty on each stream; a push
// (at most every pushIntervalMs) turns the dirty names into responses by comparing the store
// with what the client has. So a resource that changes 100 times while a client is slow is sent
// once, and a stream's memory is bounded by the model's size, not by the rate of change. At most
// maxInFlight responses per type await an ACK, and a stream whose gRPC write buffer is full is
// not written to until it drains.
import { EventEmitter } from 'node:events';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { logger } from '../common/log.ts';
import { encodeResponse, SERVER_SERVICE, type WireErrorDetail, type WireRequest } from './codec.ts';
import { XdsError } from './errors.ts';
import type { MeshTypes, ResourceMap, TypeUrl } from './resources.ts';
import { type ChangeSet, ConfigStore, type Entry, type Transaction } from './store.ts';
import { Subscription, type InFlight } from './subscription.ts';

const log = logger('xds');

export interface NodeInfo {
  /** Unique per client process. */
  readonly id: string;
  /** The Kubernetes node. */
  readonly name: string;
  readonly cluster: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface PeerInfo {
  /** "ipv4:10.0.0.1:43210" as gRPC names it. */
  readonly address: string;
  readonly node: NodeInfo;
  /** The URI SANs of the client's verified certificate (SPIFFE ids); empty without mTLS. */
  readonly uris: readonly string[];
  readonly certificate: PeerCertificate | undefined;
}

/** Returns undefined to admit the stream, or the reason it is refused (sent as PERMISSION_DENIED). */
export type Authorizer = (peer: PeerInfo) => string | undefined | Promise<string | undefined>;

/** Whether a node gets a resource. Call refilter() when its answer changes for reasons other than the value. */
export type ResourceFilter<M extends ResourceMap> = (
  node: NodeInfo,
  type: TypeUrl<M>,
  name: string,
  value: M[TypeUrl<M>],
) => boolean;

export interface ConfigServerOptions<M extends ResourceMap> {
  /** The model to serve; a new empty one (all proto types) by default. Reuse it across restarts. */
  store?: ConfigStore<M>;
  /** Changes within this window go out together. Default 10 ms: well under the one-second
   * propagation goal, and enough to merge an informer's burst into one response. */
  pushIntervalMs?: number;
  /** Split responses above this size. Default 1 MiB, a quarter of gRPC's default 4 MiB receive limit. */
  maxResponseBytes?: number;
  /** Responses per stream and type that may await an ACK. Default 4. */
  maxInFlight?: number;
  filter?: ResourceFilter<M>;
  authorize?: Authorizer;
  /** Extra @grpc/grpc-js server options. */
  serverOptions?: grpc.ServerOptions;
}

export interface Rejection {
  readonly name: string;
  readonly version: string;
  readonly message: string;
  readonly at: string;
}

export interface TypeStatus {
  readonly wildcard: boolean;
  readonly names: number;
  /** Resources the client has or is being sent. */
  readonly resources: number;
  /** Names still to compare with the store and maybe send; -1 while a full comparison is due. */
  readonly pending: number;
  /** Responses awaiting an ACK. */
  readonly inFlight: number;
  /** The client acknowledged a response that completed the type's state. */
  readonly synced: boolean;
  readonly acks: number;
  readonly nacks: number;
  readonly lastAckAt: string | undefined;
}

export interface StreamStatus {
  readonly node: NodeInfo | undefined;
  readonly address: string;
  readonly uris: readonly string[];
  readonly connectedAt: string;
  readonly types: Readonly<Record<string, TypeStatus>>;
}

export interface ServerStatus {
  readonly generation: number;
  readonly resources: Readonly<Record<string, number>>;
  readonly clients: readonly StreamStatus[];
  /** Node id → resources its current streams refused, until they accept a newer version. */
  readonly rejections: Readonly<Record<string, readonly (Rejection & { readonly type: string })[]>>;
}

export interface AckEvent {
  readonly node: NodeInfo;
  readonly type: string;
  readonly nonce: string;
  readonly resources: number;
}

export interface NackEvent extends AckEvent {
  readonly detail: WireErrorDetail;
}

type Call = grpc.ServerDuplexStream<WireRequest, Buffer>;

class Stream {
  readonly id: number;
  readonly call: Call;
  readonly address: string;
  readonly connectedAt = new Date();
  readonly subs = new Map<string, Subscription>();
  /** Type → name → the version this stream's client refused, until it changes. Per stream, not
   * per claimed node id: another stream naming the same id cannot withhold anything from it. */
  readonly rejections = new Map<string, Map<string, Rejection>>();
  node: NodeInfo | undefined;
  peer: PeerInfo | undefined;
  admitted = false;
  /** Ends the stream when the client's certificate expires. */
  expiry: NodeJS.Timeout | undefined;
  blocked = false;
  closed = false;
  nonce = 0;
  queue: Promise<void> = Promise.resolve();

  constructor(id: number, call: Call) {
    this.id = id;
    this.call = call;
    this.address = call.getPeer();
  }
}

export class ConfigServer<M extends ResourceMap = MeshTypes> extends EventEmitter {
  readonly store: ConfigStore<M>;
  readonly #opts: Required<Pick<ConfigServerOptions<M>, 'pushIntervalMs' | 'maxResponseBytes' | 'maxInFlight'>>;
  readonly #filter: ResourceFilter<M> | undefined;
  readonly #authorize: Authorizer | undefined;
  readonly #serverOptions: grpc.ServerOptions;
  readonly #streams = new Set<Stream>();
  readonly #unsubscribe: () => void;
  #server: grpc.Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastPush = 0;
  #nextStream = 0;
  #closed = false;

  constructor(options: ConfigServerOptions<M> = {}) {
    super();
    this.store = options.store ?? new ConfigStore<M>();
    this.#opts = {
      pushIntervalMs: options.pushIntervalMs ?? 10,
      maxResponseBytes: options.maxResponseBytes ?? 1 << 20,
      maxInFlight: options.maxInFlight ?? 4,
    };
    this.#filter = options.filter;
    this.#authorize = options.authorize;
    this.#serverOptions = {
      // Find dead clients (a node that vanished) so their streams are released.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...options.serverOptions,
    };
    this.#unsubscribe = this.store.subscribe((changes) => this.#onChange(changes));
  }

  /** Binds and serves; resolves to the bound port (useful with port 0). Throws MESH_ERR_XDS_LISTEN. */
  async listen(address: string, credentials: grpc.ServerCredentials): Promise<number> {
    if (this.#closed) throw new XdsError('MESH_ERR_XDS_CLOSED', 'this config server was closed; create a new one');
    const server = new grpc.Server(this.#serverOptions);
    server.addService(SERVER_SERVICE, { DeltaConfig: (call: Call) => this.#accept(call) });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentials, (err, p) => {
        if (err) {
          reject(
            new XdsError(
              'MESH_ERR_XDS_LISTEN',
              `config server cannot listen on ${address}: ${err.message} — is another controller running, or the port taken?`,
              { cause: err },
            ),
          );
        } else resolve(p);
      }),
    );
    this.#server = server;
    log.info({ address, port }, 'config server listening');
    return port;
  }

  set<T extends TypeUrl<M>>(type: T, name: string, value: M[T]): boolean {
    return this.store.set(type, name, value);
  }

  remove(type: TypeUrl<M>, name: string): boolean {
    return this.store.remove(type, name);
  }

  batch(fn: (tx: Transaction<M>) => void): number {
    return this.store.batch(fn);
  }

  /** Re-evaluates the filter for every resource, for one node (by Kubernetes node name) or all. */
  refilter(nodeName?: string): void {
    for (const s of this.#streams) {
      if (nodeName !== undefined && s.node?.name !== nodeName) continue;
      for (const sub of s.subs.values()) sub.markAll();
    }
    this.#schedule();
  }

  status(): ServerStatus {
    const resources: Record<string, number> = {};
    for (const t of this.store.types()) resources[t] = this.store.entries(t).size;
    const clients = [...this.#streams].map((s) => {
      const types: Record<string, TypeStatus> = {};
      for (const [t, sub] of s.subs) types[t] = sub.status();
      return {
        node: s.node,
        address: s.address,
        uris: s.peer?.uris ?? [],
        connectedAt: s.connectedAt.toISOString(),
        types,
      };
    });
    const rejections: Record<string, (Rejection & { type: string })[]> = {};
    for (const st of this.#streams) {
      const list = [...st.rejections].flatMap(([type, m]) => [...m.values()].map((r) => ({ type, ...r })));
      if (list.length > 0 && st.node) (rejections[st.node.id] ??= []).push(...list);
    }
    return { generation: this.store.generation, resources, clients, rejections };
  }

  /** Ends every stream (clients reconnect elsewhere or later) and stops listening. */
  async close(graceMs = 2000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#unsubscribe();
    clearTimeout(this.#timer);
    for (const s of this.#streams) this.#drop(s);
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    log.info('config server closed');
  }

  #accept(call: Call): void {
    if (this.#closed) {
      call.destroy(new Error('closing'));
      return;
    }
    const s = new Stream(++this.#nextStream, call);
    this.#streams.add(s);
    call.on('data', (req: WireRequest) => {
      s.queue = s.queue.then(() => this.#onRequest(s, req)).catch((e) => this.#fail(s, e));
    });
    call.on('end', () => this.#drop(s));
    call.on('error', (e) => {
      log.debug({ stream: s.id, err: e.message }, 'config stream error');
      this.#drop(s);
    });
    call.on('cancelled', () => this.#drop(s));
    call.on('close', () => this.#drop(s));
  }

  async #onRequest(s: Stream, req: WireRequest): Promise<void> {
    if (s.closed) return;
    if (!s.admitted) await this.#admit(s, req);
    if (s.closed) return;
    const type = req.typeUrl;
    if (!this.store.has(type)) {
      log.warn({ node: s.node?.id, type }, 'client asked for a type this server does not serve; ignored');
      return;
    }
    let sub = s.subs.get(type);
    if (!sub) {
      sub = new Subscription(req.initialResourceVersions);
      s.subs.set(type, sub);
      // Envoy: an empty list on the first request for a type means the wildcard.
      if (req.resourceNamesSubscribe.length === 0) sub.subscribe(['*']);
    }
    if (req.responseNonce !== '') this.#onReply(s, type, sub, req);
    sub.subscribe(req.resourceNamesSubscribe);
    sub.unsubscribe(req.resourceNamesUnsubscribe);
    this.#schedule();
  }

  async #admit(s: Stream, req: WireRequest): Promise<void> {
    if (!req.node || req.node.id === '') {
      throw new XdsError(
        'MESH_ERR_XDS_PROTOCOL',
        'the first request of a config stream must carry node.id (and node.name, the Kubernetes node)',
      );
    }
    s.node = { id: req.node.id, name: req.node.name, cluster: req.node.cluster, metadata: { ...req.node.metadata } };
    const certificate = s.call.getAuthContext()?.sslPeerCertificate;
    s.peer = { address: s.address, node: s.node, uris: uriSans(certificate), certificate };
    if (this.#authorize) {
      let refusal: string | undefined;
      try {
        refusal = await this.#authorize(s.peer);
      } catch (e) {
        refusal = `the authorizer failed: ${(e as Error).message}`;
      }
      if (refusal !== undefined) {
        throw new XdsError(
          'MESH_ERR_XDS_UNAUTHORIZED',
          `config stream from ${s.address} (node ${s.node.name}, identity ${s.peer.uris.join(',') || 'none'}) refused: ${refusal}`,
        );
      }
    }
    s.admitted = true;
    this.#expireAt(s, Date.parse(certificate?.valid_to ?? ''));
    log.info({ node: s.node, address: s.address, uris: s.peer.uris }, 'config client connected');
    this.emit('connect', s.node);
  }

  /**
   * The client was admitted on a certificate that ends: at its notAfter the stream is ended, and
   * the client reconnects with its renewed certificate, which is checked afresh.
   */
  #expireAt(s: Stream, notAfter: number): void {
    if (!Number.isFinite(notAfter)) return;
    const left = notAfter - Date.now();
    s.expiry = setTimeout(
      () => {
        if (Date.now() < notAfter) return this.#expireAt(s, notAfter);
        this.#fail(s, new XdsError('MESH_ERR_XDS_UNAUTHORIZED', `the client certificate of node ${s.node?.name ?? '?'} expired at ${new Date(notAfter).toISOString()}; reconnect with the renewed one`));
      },
      Math.max(0, Math.min(left, 2 ** 31 - 1)),
    );
    s.expiry.unref();
  }

  #onReply(s: Stream, type: string, sub: Subscription, req: WireRequest): void {
    const sent = sub.inflight.get(req.responseNonce);
    if (!sent) {
      log.debug({ node: s.node?.id, type, nonce: req.responseNonce }, 'reply to an unknown nonce; ignored');
      return;
    }
    sub.inflight.delete(req.responseNonce);
    const node = s.node!;
    const memo = s.rejections.get(type);
    if (!req.errorDetail) {
      sub.acked(sent);
      if (memo) for (const [name, e] of sent.names) if (memo.get(name)?.version !== e.version) memo.delete(name);
      this.emit('ack', { node, type, nonce: req.responseNonce, resources: sent.names.size } satisfies AckEvent);
      return;
    }
    this.#onNack(s, type, sub, sent, req.responseNonce, req.errorDetail);
  }

  // A NACK: the client kept its previous versions of everything in the response. The resources it
  // named as refused are remembered and not sent again until they change; the rest of the
  // response goes out again at the next push. A client that names nothing refuses all of it.
  #onNack(s: Stream, type: string, sub: Subscription, sent: InFlight, nonce: string, detail: WireErrorDetail): void {
    const node = s.node!;
    const named = new Map(detail.resourceErrors.map((e) => [e.name, e.message]));
    const refused = new Set<string>();
    for (const [name, e] of sent.names) {
      if (e.version !== null && (named.size === 0 || named.has(name))) refused.add(name);
    }
    let memo = s.rejections.get(type);
    if (!memo) s.rejections.set(type, (memo = new Map()));
    const at = new Date().toISOString();
    for (const name of refused) {
      const version = sent.names.get(name)!.version!;
      memo.set(name, { name, version, message: named.get(name) ?? detail.message, at });
    }
    sub.nacked(sent, refused);
    log.warn(
      { node, type, nonce, refused: [...refused].slice(0, 20), message: detail.message },
      'config client rejected resources; it keeps its last good versions',
    );
    this.emit('nack', { node, type, nonce, resources: sent.names.size, detail } satisfies NackEvent);
  }

  #onChange(changes: ChangeSet): void {
    // A refused version that changed is offered again; forget the refusal.
    for (const s of this.#streams) {
      for (const [type, names] of changes) {
        const memo = s.rejections.get(type);
        if (memo) for (const n of names) memo.delete(n);
      }
    }
    for (const s of this.#streams) {
      for (const [type, names] of changes) s.subs.get(type)?.mark(names);
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    const wait = Math.max(0, this.#lastPush + this.#opts.pushIntervalMs - Date.now());
    this.#timer = setTimeout(() => this.#push(), wait);
  }

  #push(): void {
    this.#timer = undefined;
    let sent = false;
    for (const s of this.#streams) {
      if (!s.admitted || s.blocked || s.closed) continue;
      for (const [type, sub] of s.subs) {
        while (!s.blocked && sub.inflight.size < this.#opts.maxInFlight && this.#respond(s, type, sub)) sent = true;
      }
    }
    // Only a push that sent something holds the next one back: every ACK schedules a push, and
    // one that found nothing to send used to delay the next change by up to pushIntervalMs.
    if (sent) this.#lastPush = Date.now();
  }

  /** Sends one response for the type if there is anything to send; false otherwise. */
  #respond(s: Stream, type: string, sub: Subscription): boolean {
    const node = s.node!;
    const entries = this.store.entries(type as TypeUrl<M>) as ReadonlyMap<string, Entry<unknown>>;
    const refused = s.rejections.get(type);
    const filter = this.#filter;
    const want = (name: string, e: Entry<unknown>) => {
      if (!sub.wants(name)) return false;
      if (!filter) return true;
      try {
        return filter(node, type as TypeUrl<M>, name, e.value as M[TypeUrl<M>]);
      } catch (err) {
        // Withholding is the safe side: the node keeps serving its last good state meanwhile.
        log.error({ node: node.id, type, name, err: (err as Error).message }, 'resource filter threw; resource withheld');
        return false;
      }
    };
    const built = sub.build(entries, want, refused, this.#opts.maxResponseBytes);
    if (!built) return false;
    const nonce = (++s.nonce).toString(36);
    const bytes = encodeResponse(
      {
        systemVersionInfo: String(this.store.generation),
        typeUrl: type,
        removedResources: built.removed,
        nonce,
        synced: built.synced,
      },
      built.entries,
    );
    sub.inflight.set(nonce, built.record);
    log.debug(
      { node: node.id, type, nonce, resources: built.entries.length, removed: built.removed.length, bytes: bytes.length },
      'config push',
    );
    if (!s.call.write(bytes)) {
      s.blocked = true;
      s.call.once('drain', () => {
        s.blocked = false;
        this.#schedule();
      });
    }
    return true;
  }

  #fail(s: Stream, e: unknown): void {
    const err = e instanceof XdsError ? e : new XdsError('MESH_ERR_XDS_PROTOCOL', String((e as Error)?.message ?? e));
    log.warn({ node: s.node?.id, address: s.address, code: err.code, err: err.message }, 'config stream failed');
    const code = err.code === 'MESH_ERR_XDS_UNAUTHORIZED' ? grpc.status.PERMISSION_DENIED : grpc.status.INVALID_ARGUMENT;
    if (!s.closed) s.call.emit('error', { code, details: err.message });
    this.#drop(s);
  }

  #drop(s: Stream): void {
    if (s.closed) return;
    s.closed = true;
    clearTimeout(s.expiry);
    this.#streams.delete(s);
    if (s.admitted) {
      log.info({ node: s.node?.id }, 'config client disconnected');
      this.emit('disconnect', s.node);
    }
    try {
      s.call.end();
    } catch {
      // already finished
    }
  }
}

/** The URI SANs (e.g. spiffe://cluster.local/ns/mesh-system/sa/ztunnel) of a peer certificate. */
export function uriSans(cert: PeerCertificate | undefined): string[] {
  const san = cert?.subjectaltname;
  if (!san) return [];
  return san
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}
