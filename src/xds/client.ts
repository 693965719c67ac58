// The config stream's client, for node agents and ztunnels: subscribes, validates and applies
// deltas, ACKs or NACKs them, and reconnects with capped exponential backoff, resuming from the
// versions it holds. Whatever happens to the stream, the state it last applied stays: a
// controller restart or a bad resource never empties or half-updates a node's config.
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import { logger } from '../common/log.ts';
import {
  DELTA_CONFIG_PATH,
  deserializeResponse,
  resourceField,
  serializeRequest,
  type WireRequest,
  type WireResourceError,
  type WireResponse,
} from './codec.ts';
import { XdsError } from './errors.ts';
import type { MeshTypes, ResourceMap, TypeUrl } from './resources.ts';
import type { NodeInfo } from './server.ts';

const log = logger('xds');

/** Returns undefined to accept a resource, or why it is refused (sent to the server in the NACK). */
export type Validator<M extends ResourceMap> = (
  type: TypeUrl<M>,
  name: string,
  value: M[TypeUrl<M>],
) => string | Error | undefined;

export interface ConfigClientOptions<M extends ResourceMap> {
  /** "host:port" of the config server. */
  address: string;
  credentials: grpc.ChannelCredentials;
  node: NodeInfo;
  /** The types to subscribe to. */
  types: readonly TypeUrl<M>[];
  /** Per type, the names to subscribe to instead of everything the server sends this node. */
  names?: Partial<Record<TypeUrl<M>, readonly string[]>>;
  validate?: Validator<M>;
  /** Reconnect delays: doubling from initialMs (default 200) up to maxMs (default 10 s — a
   * restarted controller is back within seconds, and thousands of nodes must not stampede it). */
  backoff?: { initialMs?: number; maxMs?: number };
  channelOptions?: grpc.ChannelOptions;
}

export interface ClientEntry<V> {
  readonly version: string;
  readonly value: V;
}

export interface ChangeEvent {
  readonly type: string;
  /** Added or changed names. */
  readonly updated: readonly string[];
  readonly removed: readonly string[];
  readonly nonce: string;
}

export interface RejectEvent {
  readonly type: string;
  readonly nonce: string;
  readonly errors: readonly WireResourceError[];
}

export interface ClientStatus {
  readonly connected: boolean;
  readonly connects: number;
  readonly lastError: string | undefined;
  readonly types: Readonly<
    Record<string, { resources: number; ready: boolean; lastNonce: string; lastReject: RejectEvent | undefined }>
  >;
}

interface TypeState {
  readonly entries: Map<string, ClientEntry<unknown>>;
  ready: boolean;
  lastNonce: string;
  lastReject: RejectEvent | undefined;
}

type Call = grpc.ClientDuplexStream<WireRequest, WireResponse>;

/**
 * Events: 'change' (ChangeEvent) after a response was applied; 'reject' (RejectEvent) after one
 * was refused; 'ready' (type) the first time a type's full state was applied; 'connected';
 * 'disconnected' (Error).
 */
export class ConfigClient<M extends ResourceMap = MeshTypes> extends EventEmitter {
  readonly node: NodeInfo;
  readonly #opts: ConfigClientOptions<M>;
  #client: grpc.Client;
  readonly #state = new Map<string, TypeState>();
  readonly #initialMs: number;
  readonly #maxMs: number;
  #call: Call | undefined;
  #connected = false;
  #connects = 0;
  #attempt = 0;
  #lastError: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  #started = false;
  #readyWaiters: (() => void)[] = [];

  constructor(options: ConfigClientOptions<M>) {
    super();
    this.#opts = options;
    this.node = options.node;
    this.#initialMs = options.backoff?.initialMs ?? 200;
    this.#maxMs = options.backoff?.maxMs ?? 10_000;
    for (const t of options.types) {
      resourceField(t);
      this.#state.set(t, { entries: new Map(), ready: false, lastNonce: '', lastReject: undefined });
    }
    this.#client = this.#channel();
  }

  #channel(): grpc.Client {
    return new grpc.Client(this.#opts.address, this.#opts.credentials, {
      // The channel's own reconnect backoff starts at 1 s and grows to 120 s by default; keep it
      // in step with ours so a restarted controller is found quickly.
      'grpc.initial_reconnect_backoff_ms': this.#initialMs,
      'grpc.max_reconnect_backoff_ms': this.#maxMs,
      // Notice a controller that vanished without closing the connection.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      ...this.#opts.channelOptions,
    });
  }

  start(): this {
    if (this.#started) return this;
    this.#started = true;
    this.#connect();
    return this;
  }

  get<T extends TypeUrl<M>>(type: T, name: string): M[T] | undefined {
    return this.#of(type).entries.get(name)?.value as M[T] | undefined;
  }

  entries<T extends TypeUrl<M>>(type: T): ReadonlyMap<string, ClientEntry<M[T]>> {
    return this.#of(type).entries as Map<string, ClientEntry<M[T]>>;
  }

  /** name → version, as sent in initial_resource_versions on reconnect. */
  versions(type: TypeUrl<M>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [n, e] of this.#of(type).entries) out[n] = e.version;
    return out;
  }

  /** Every subscribed type (or the given one) received its full state at least once. */
  isReady(type?: TypeUrl<M>): boolean {
    if (type !== undefined) return this.#of(type).ready;
    for (const s of this.#state.values()) if (!s.ready) return false;
    return true;
  }

  /** Resolves once isReady(); rejects with MESH_ERR_XDS_NOT_READY after timeoutMs. */
  ready(timeoutMs = 30_000): Promise<void> {
    if (this.isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new XdsError(
            'MESH_ERR_XDS_NOT_READY',
            `no full config from ${this.#opts.address} within ${timeoutMs} ms (${this.#lastError ?? 'no error seen'}) — is the controller running and reachable, and does it trust this node's certificate?`,
          ),
        );
      }, timeoutMs);
      this.#readyWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  status(): ClientStatus {
    const types: Record<string, ClientStatus['types'][string]> = {};
    for (const [t, s] of this.#state) {
      types[t] = { resources: s.entries.size, ready: s.ready, lastNonce: s.lastNonce, lastReject: s.lastReject };
    }
    return { connected: this.#connected, connects: this.#connects, lastError: this.#lastError, types };
  }

  /** Stops reconnecting and closes the stream; the state stays readable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retry);
    const call = this.#call;
    this.#call = undefined;
    if (call) {
      call.removeAllListeners('data');
      call.on('error', () => {});
      call.cancel();
    }
    this.#client.close();
  }

  #connect(): void {
    if (this.#closed) return;
    const call = this.#client.makeBidiStreamRequest(DELTA_CONFIG_PATH, serializeRequest, deserializeResponse);
    this.#call = call;
    let first = true;
    for (const [type, s] of this.#state) {
      const names = this.#opts.names?.[type as TypeUrl<M>];
      const versions: Record<string, string> = {};
      for (const [n, e] of s.entries) versions[n] = e.version;
      call.write(
        request({
          node: first ? { ...this.node } : null,
          typeUrl: type,
          initialResourceVersions: versions,
          resourceNamesSubscribe: names ? [...names] : ['*'],
        }),
      );
      first = false;
    }
    call.on('metadata', () => this.#onConnected());
    call.on('data', (res: WireResponse) => {
      if (call !== this.#call) return;
      this.#onConnected();
      this.#attempt = 0;
      this.#onResponse(call, res);
    });
    let ended = false;
    const end = (err: Error) => {
      if (ended) return;
      ended = true;
      this.#onEnd(call, err);
    };
    call.on('error', (e: grpc.ServiceError) => end(e));
    call.on('end', () => end(new Error('the server ended the stream')));
    call.on('status', (st: grpc.StatusObject) => {
      if (st.code !== grpc.status.OK) end(new Error(`${grpc.status[st.code]}: ${st.details}`));
    });
  }

  #onConnected(): void {
    if (this.#connected) return;
    this.#connected = true;
    this.#connects++;
    log.info({ address: this.#opts.address, node: this.node.id }, 'config stream connected');
    this.emit('connected');
  }

  #onEnd(call: Call, err: Error): void {
    if (call !== this.#call) return;
    this.#call = undefined;
    const was = this.#connected;
    this.#connected = false;
    this.#lastError = err.message;
    if (this.#closed) return;
    const delay = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#attempt);
    this.#attempt++;
    // Jitter (half to full delay) so nodes that lost the same controller do not return in step.
    const wait = Math.round(delay * (0.5 + Math.random() * 0.5));
    (was ? log.warn.bind(log) : log.debug.bind(log))(
      { address: this.#opts.address, err: err.message, retryInMs: wait },
      'config stream lost; keeping the last good config and reconnecting',
    );
    if (was) this.emit('disconnected', err);
    call.cancel();
    // A refused stream (PERMISSION_DENIED: the server ends a stream when the client certificate
    // it was admitted on expires) must not come back on the same TLS connection, which still
    // speaks for that certificate: a new channel makes a new handshake with the current one.
    if ((err as Partial<grpc.ServiceError>).code === grpc.status.PERMISSION_DENIED || /PERMISSION_DENIED|UNAUTHENTICATED/.test(err.message)) {
      this.#client.close();
      this.#client = this.#channel();
    }
    this.#retry = setTimeout(() => this.#connect(), wait);
  }

  // A response is applied whole or not at all: every resource is checked first, and one refusal
  // NACKs the response and leaves every resource at its previous version.
  #onResponse(call: Call, res: WireResponse): void {
    const s = this.#state.get(res.typeUrl);
    if (!s) {
      log.warn({ type: res.typeUrl }, 'the server sent a type this client did not subscribe to; ignored');
      return;
    }
    const type = res.typeUrl as TypeUrl<M>;
    const field = resourceField(type);
    const errors: WireResourceError[] = [];
    for (const r of res.resources) {
      const value = r[field];
      let why: string | undefined;
      if (r.resource !== field || value === null || value === undefined) {
        why = `carries ${r.resource ?? 'nothing'}, expected ${field}`;
      } else if (this.#opts.validate) {
        try {
          const v = this.#opts.validate(type, r.name, value as M[TypeUrl<M>]);
          why = v instanceof Error ? v.message : v;
        } catch (e) {
          why = `validator threw: ${(e as Error).message}`;
        }
      }
      if (why !== undefined) errors.push({ name: r.name, version: r.version, message: why });
    }
    s.lastNonce = res.nonce;
    if (errors.length > 0) {
      const message = errors
        .slice(0, 10)
        .map((e) => `${e.name}@${e.version}: ${e.message}`)
        .join('; ');
      call.write(
        request({
          typeUrl: res.typeUrl,
          responseNonce: res.nonce,
          errorDetail: { code: grpc.status.INVALID_ARGUMENT, message, resourceErrors: errors },
        }),
      );
      const ev: RejectEvent = { type: res.typeUrl, nonce: res.nonce, errors };
      s.lastReject = ev;
      log.warn({ type: res.typeUrl, nonce: res.nonce, refused: errors.length, message }, 'config rejected');
      this.emit('reject', ev);
      return;
    }
    for (const r of res.resources) s.entries.set(r.name, { version: r.version, value: r[field] });
    for (const name of res.removedResources) s.entries.delete(name);
    call.write(request({ typeUrl: res.typeUrl, responseNonce: res.nonce }));
    if (res.resources.length > 0 || res.removedResources.length > 0) {
      this.emit('change', {
        type: res.typeUrl,
        updated: res.resources.map((r) => r.name),
        removed: res.removedResources,
        nonce: res.nonce,
      } satisfies ChangeEvent);
    }
    if (res.synced && !s.ready) {
      s.ready = true;
      this.emit('ready', res.typeUrl);
      if (this.isReady()) for (const w of this.#readyWaiters.splice(0)) w();
    }
  }

  #of(type: string): TypeState {
    const s = this.#state.get(type);
    if (!s) {
      throw new XdsError('MESH_ERR_XDS_UNKNOWN_TYPE', `this client did not subscribe to ${type}; it has ${[...this.#state.keys()].join(', ')}`);
    }
    return s;
  }
}

function request(r: Partial<WireRequest>): WireRequest {
  return {
    node: null,
    typeUrl: '',
    initialResourceVersions: {},
    resourceNamesSubscribe: [],
    resourceNamesUnsubscribe: [],
    responseNonce: '',
    errorDetail: null,
    ...r,
  };
}
