// CreateCertificate over gRPC with server-side TLS (the caller has no certificate yet; it proves
// who it is with its node service-account token). Order of checks, as in Istio's CA: who calls
// (UNAUTHENTICATED), what is asked (INVALID_ARGUMENT), may they have it (PERMISSION_DENIED).
import * as grpc from '@grpc/grpc-js';
import { logger } from '../../common/log.ts';
import {
  caServiceClient,
  type CertificateRequest,
  type CertificateResponse,
  checkTrustDomain,
  formatSpiffeId,
  IdentityError,
  nodeSubject,
  parseSpiffeId,
  type SpiffeId,
  structString,
} from '../../identity/index.ts';
import { joinPem, TlsError } from '../../tls/index.ts';
import { type CsrInfo, parseCsr } from '../../tls/issuer.ts';
import { type Authenticator, bearerToken } from './authn.ts';
import type { CertificateAuthority } from './authority.ts';
import type { NodeAuthorizer } from './authz.ts';
import { CaError, invalidRequest, unauthenticated } from './errors.ts';

const log = logger('ca');

const HOUR = 3_600_000;
export const CA_DEFAULTS = Object.freeze({
  /** Istio's default workload certificate TTL (DEFAULT_WORKLOAD_CERT_TTL). */
  defaultTtlMs: 24 * HOUR,
  /** Istio's MAX_WORKLOAD_CERT_TTL: longer requests are cut to this. */
  maxTtlMs: 90 * 24 * HOUR,
  /** The serving certificate outlives any controller pod; it is re-issued on every start. */
  servingTtlMs: 365 * 24 * HOUR,
  servingNames: Object.freeze({ dnsNames: ['mesh-controller.mesh-system.svc', 'mesh-controller.mesh-system.svc.cluster.local'], ipAddresses: ['127.0.0.1'] }),
  /** istiod's CA port. */
  port: 15012,
});

/** Istio's metadata key for the identity a node asks for on a workload's behalf. */
export const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

export interface CaServerOptions {
  readonly trustDomain: string;
  readonly authority: CertificateAuthority;
  readonly authenticator: Authenticator;
  readonly authorizer: NodeAuthorizer;
  readonly defaultTtlMs?: number;
  readonly maxTtlMs?: number;
  readonly servingNames?: { dnsNames: readonly string[]; ipAddresses: readonly string[] };
  readonly servingTtlMs?: number;
}

export interface IssueResult {
  readonly identity: SpiffeId;
  readonly node: string;
  readonly certChain: string[];
  readonly serial: string;
  readonly notAfter: Date;
}

export class CaServer {
  private readonly o: Required<CaServerOptions>;
  private server: grpc.Server | undefined;
  private boundPort: number | undefined;

  constructor(opts: CaServerOptions) {
    this.o = {
      defaultTtlMs: CA_DEFAULTS.defaultTtlMs,
      maxTtlMs: CA_DEFAULTS.maxTtlMs,
      servingNames: CA_DEFAULTS.servingNames,
      servingTtlMs: CA_DEFAULTS.servingTtlMs,
      ...opts,
    };
  }

  get port(): number | undefined {
    return this.boundPort;
  }

  /**
   * Checks and signs one request. `authorization` is the raw metadata value. Rejects with a
   * CaError whose grpcStatus is what the caller gets.
   */
  async issue(authorization: string | undefined, req: CertificateRequest): Promise<IssueResult> {
    const token = bearerToken(authorization);
    if (!token) throw unauthenticated('no bearer token: send the node service-account token as "authorization: Bearer <token>" metadata');
    const caller = await this.o.authenticator.authenticate(token);

    const { identity, csr } = await this.requested(req);
    let ttlMs = this.ttl(req.validity_duration);

    // A workload that holds its own identity (a waypoint) asks for exactly its service account's,
    // with a token bound to its live pod; a node asks for its own or for a pod on it.
    const self = this.o.authorizer.isCallerIdentity(caller, identity);
    const isNode = this.o.authorizer.isNode(caller);
    const node = await this.o.authorizer.callerNode(caller, self);
    // A node's own identity (its service account) gets a certificate bound to that node, which
    // the config stream and the flow relay read the node from (identity/node.ts). Any other
    // identity is a workload's, and a pod with it must run on the caller's node.
    const own = isNode && self;
    if (!self) await this.o.authorizer.checkIdentityOnNode(identity, node);
    // A node credential lives no longer than the default lifetime, whatever is asked: it must not
    // outlive the node's short-lived token by much (a leaked token is not a 90-day credential).
    if (own) ttlMs = Math.min(ttlMs, this.o.defaultTtlMs);

    const issued = await this.o.authority.signWorkload(csr, identity, ttlMs, Date.now(), own ? nodeSubject(node) : '');
    return { identity, node, certChain: issued.certChain, serial: issued.serial, notAfter: issued.notAfter };
  }

  private async requested(req: CertificateRequest): Promise<{ identity: SpiffeId; csr: CsrInfo }> {
    let csr;
    try {
      csr = await parseCsr(req.csr);
    } catch (e) {
      throw invalidRequest(`the CSR is not usable: ${(e as Error).message}`, e);
    }
    checkKey(csr.key);
    if (csr.sanCount !== 1 || csr.uris.length !== 1) {
      throw invalidRequest(
        `the CSR must carry exactly one SAN, the URI of the SPIFFE identity; it has ${csr.sanCount} (${[...csr.uris, ...csr.dnsNames, ...csr.ipAddresses].join(', ') || 'none'})`,
      );
    }
    let identity: SpiffeId;
    try {
      identity = parseSpiffeId(csr.uris[0]!);
      checkTrustDomain(identity, this.o.trustDomain);
    } catch (e) {
      if (e instanceof IdentityError) throw invalidRequest(`the CSR's URI SAN is not acceptable: ${e.message}`, e);
      throw e;
    }
    const asked = structString(req.metadata, IMPERSONATED_IDENTITY);
    if (asked === null) throw invalidRequest(`metadata "${IMPERSONATED_IDENTITY}" must be a string`);
    if (asked !== undefined && asked !== formatSpiffeId(identity)) {
      throw invalidRequest(`the CSR's URI SAN ${formatSpiffeId(identity)} differs from the requested identity ${asked}`);
    }
    return { identity, csr };
  }

  private ttl(seconds: number | string | undefined): number {
    const s = Number(seconds ?? 0);
    if (!Number.isFinite(s) || s < 0) throw invalidRequest(`validity_duration ${String(seconds)} is not a non-negative number of seconds`);
    if (s === 0) return this.o.defaultTtlMs;
    return Math.min(s * 1000, this.o.maxTtlMs);
  }

  /** Serves on host:port (0 picks a free port); resolves with the bound port. */
  async listen(host = '0.0.0.0', port: number = CA_DEFAULTS.port): Promise<number> {
    const serving = await this.o.authority.issueServing(this.o.servingNames, this.o.servingTtlMs);
    const creds = grpc.ServerCredentials.createSsl(
      null,
      [{ private_key: Buffer.from(serving.key), cert_chain: Buffer.from(joinPem(serving.certChain.slice(0, -1))) }],
      false,
    );
    const server = new grpc.Server();
    server.addService(caServiceClient().service, {
      CreateCertificate: (call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>, done: grpc.sendUnaryData<CertificateResponse>) => {
        void this.handle(call, done);
      },
    });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    this.boundPort = bound;
    log.info({ host, port: bound, root: this.o.authority.material.source }, 'CA listening');
    return bound;
  }

  private async handle(call: grpc.ServerUnaryCall<CertificateRequest, CertificateResponse>, done: grpc.sendUnaryData<CertificateResponse>): Promise<void> {
    const started = performance.now();
    const auth = call.metadata.get('authorization')[0];
    try {
      const r = await this.issue(typeof auth === 'string' ? auth : auth?.toString('utf8'), call.request);
      log.info(
        { identity: formatSpiffeId(r.identity), node: r.node, serial: r.serial, notAfter: r.notAfter.toISOString(), ms: Math.round(performance.now() - started) },
        'issued a workload certificate',
      );
      done(null, { cert_chain: r.certChain });
    } catch (e) {
      const err = toCaError(e);
      log.warn({ peer: call.getPeer(), code: err.code, err: err.message }, 'refused a certificate request');
      done({ code: err.grpcStatus, details: err.message });
    }
  }

  /** Stops accepting calls, waits up to `graceMs` for those in flight, then closes. */
  async close(graceMs = 2000): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/** NIST P-256 and P-384 (what ztunnel and Istio's CA use), or RSA of at least 2048 bits (NIST SP 800-131A). */
const CURVES: Readonly<Record<string, string>> = { prime256v1: 'P-256', secp384r1: 'P-384' };

function checkKey(key: CsrInfo['key']): void {
  if (key.type === 'ec' && key.curve && CURVES[key.curve]) return;
  if (key.type === 'rsa' && (key.bits ?? 0) >= 2048) return;
  const what = key.type === 'ec' ? `an EC key on curve ${key.curve ?? 'unknown'}` : key.type === 'rsa' ? `an RSA key of ${key.bits ?? '?'} bits` : `a ${key.type} key`;
  throw invalidRequest(`the CSR carries ${what}; the CA signs only EC P-256 or P-384 keys, or RSA keys of at least 2048 bits`);
}

function toCaError(e: unknown): CaError {
  if (e instanceof CaError) return e;
  if (e instanceof TlsError && e.code === 'MESH_ERR_CSR') return invalidRequest(e.message, e);
  log.error({ err: e }, 'CA internal error');
  return new CaError('MESH_ERR_CA_INTERNAL', `internal CA error: ${(e as Error)?.message ?? String(e)}`, e);
}
