// Asks the CA for a workload certificate: a fresh P-256 key per request, a CSR whose only SAN is
// the identity, the node's service-account token as bearer metadata. The answer is checked before
// it is used: the leaf names that identity, carries our key, and chains to the returned roots.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import {
  createCsr,
  type CertInfo,
  generateKeyPair,
  keyPairFingerprint,
  mergeBundles,
  parseCertificate,
  splitPemBundle,
  verifyChain,
} from '../tls/index.ts';
import { caServiceClient, type CertificateRequest, type CertificateResponse, stringStruct } from './ca-proto.ts';
import { CaClientError } from './errors.ts';
import { formatSpiffeId, type SpiffeId } from './spiffe.ts';

/** The audience the node's service-account token must be minted for to be accepted by the CA
 * (Istio's is "istio-ca"): a token for the API server is not a CA credential. */
export const CA_TOKEN_AUDIENCE = 'mesh-ca';

/** A workload's key and certificate, ready for mtlsServerOptions/mtlsClientOptions. */
export interface WorkloadCertificate {
  readonly identity: SpiffeId;
  /** PKCS#8 PEM. */
  readonly key: string;
  /** Leaf first, then intermediates. */
  readonly certChain: readonly string[];
  /** The trust bundle the CA returned (one or more roots). */
  readonly roots: readonly string[];
  readonly leaf: CertInfo;
  /** When we received it (refresh is timed from here, not from the possibly backdated notBefore). */
  readonly receivedAt: Date;
}

/** Contract: resolves with a verified certificate for `identity` or rejects with CaClientError. */
export interface CertificateProvider {
  fetch(identity: SpiffeId): Promise<WorkloadCertificate>;
}

export interface CertificateClientOptions {
  /** host:port of the CA (e.g. mesh-controller.mesh-system.svc:15012). */
  readonly address: string;
  /** Roots that sign the CA's serving certificate: the mesh-ca-root-cert bundle. */
  readonly caRoots?: string | readonly string[];
  /** Instead of `caRoots`: credentials that follow the trust bundle as it rotates
   * (RotatingCertificates without an identity). */
  readonly credentials?: grpc.ChannelCredentials;
  /** Name to check in the CA's serving certificate when it differs from the address's host. */
  readonly serverName?: string;
  /** The node's service-account token, read per request because projected tokens rotate. */
  readonly token: () => string | Promise<string>;
  /** Requested lifetime in seconds; 0 or unset lets the CA choose (24h). */
  readonly validitySeconds?: number;
  /** Deadline per request (default 10 s). */
  readonly timeoutMs?: number;
}

/**
 * A token source reading a projected token file on every call. Synchronously: the file is a
 * few hundred bytes on a tmpfs, and an asynchronous read is four trips through libuv's thread
 * pool (open, stat, read, close), each waiting for a turn of the event loop — 26–53 ms of a
 * restarted ztunnel's first certificate requests, while the rest of its start kept the loop busy
 * (measured in test/e2e/ztunnel-restart.test.ts).
 */
export function tokenFile(path: string): () => string {
  return () => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch (e) {
      throw new CaClientError('MESH_ERR_CA_TOKEN', `cannot read the node token at ${path}: ${(e as Error).message} — is the projected service-account token mounted?`, undefined, e);
    }
  };
}

export class CertificateClient implements CertificateProvider {
  private readonly o: CertificateClientOptions;
  private readonly client: grpc.Client;

  constructor(opts: CertificateClientOptions) {
    this.o = opts;
    const Ctor = caServiceClient();
    const channelOpts: grpc.ChannelOptions = opts.serverName
      ? { 'grpc.ssl_target_name_override': opts.serverName, 'grpc.default_authority': opts.serverName }
      : {};
    let creds = opts.credentials;
    if (!creds) {
      if (!opts.caRoots) throw new CaClientError('MESH_ERR_CA_REQUEST', 'the CA client needs caRoots or credentials to check the CA\'s certificate');
      creds = grpc.credentials.createSsl(Buffer.from(mergeBundles(...(typeof opts.caRoots === 'string' ? [opts.caRoots] : opts.caRoots)).join('')));
    }
    this.client = new Ctor(opts.address, creds, channelOpts);
    // Connect now rather than on the first call: the TCP and TLS handshakes with the CA overlap
    // the key generation and CSR of the first request (a restarted ztunnel's first certificates).
    this.client.getChannel().getConnectivityState(true);
  }

  /** Resolves true once the channel to the CA is connected (TLS done), false after `timeoutMs`. */
  connected(timeoutMs: number): Promise<boolean> {
    const channel = this.client.getChannel();
    const deadline = Date.now() + timeoutMs;
    return new Promise((resolve) => {
      const check = (): void => {
        const state = channel.getConnectivityState(true);
        if (state === grpc.connectivityState.READY) return resolve(true);
        if (Date.now() >= deadline || state === grpc.connectivityState.SHUTDOWN) return resolve(false);
        channel.watchConnectivityState(state, deadline, check);
      };
      check();
    });
  }

  /** `onSent`: called once the request is handed to the channel (a restarted ztunnel waits for
   * that before it loads the rest of its modules, which blocks its event loop; see boot.ts). */
  async fetch(identity: SpiffeId, opts: { onSent?: () => void } = {}): Promise<WorkloadCertificate> {
    const uri = formatSpiffeId(identity);
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, uri);
    const token = await this.o.token();
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const req: CertificateRequest = {
      csr,
      validity_duration: this.o.validitySeconds ?? 0,
      metadata: stringStruct({ ImpersonatedIdentity: uri }),
    };
    const res = await this.call(req, md, uri, opts.onSent);
    const receivedAt = new Date();
    return this.check(res, identity, keys.privateKeyPem, await keyPairFingerprint(keys), receivedAt);
  }

  private call(req: CertificateRequest, md: grpc.Metadata, uri: string, onSent?: () => void): Promise<CertificateResponse> {
    const deadline = new Date(Date.now() + (this.o.timeoutMs ?? 10_000));
    return new Promise((resolve, reject) => {
      const c = this.client as unknown as {
        CreateCertificate(r: CertificateRequest, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: CertificateResponse) => void): void;
      };
      c.CreateCertificate(req, md, { deadline }, (err, res) => {
        if (err) {
          const hint = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED ? ` — is the CA at ${this.o.address} reachable, and does its certificate chain to the mesh-ca-root-cert bundle?` : '';
          reject(new CaClientError('MESH_ERR_CA_REQUEST', `CA refused or failed the certificate for ${uri}: ${grpc.status[err.code] ?? err.code}: ${err.details}${hint}`, err.code, err));
        } else resolve(res!);
      });
      onSent?.();
    });
  }

  private check(res: CertificateResponse, identity: SpiffeId, key: string, keyFp: string, receivedAt: Date): WorkloadCertificate {
    const uri = formatSpiffeId(identity);
    const bad = (why: string, cause?: unknown): CaClientError => new CaClientError('MESH_ERR_CA_RESPONSE', `the CA's certificate for ${uri} is unusable: ${why}`, undefined, cause);
    const chain = res?.cert_chain ?? [];
    if (chain.length < 2) throw bad(`expected [leaf, ..., roots], got ${chain.length} element(s)`);
    try {
      const leafPem = splitPemBundle(chain[0]!, 'leaf')[0]!;
      const intermediates = chain.slice(1, -1).flatMap((c) => splitPemBundle(c, 'intermediate'));
      const roots = mergeBundles(chain[chain.length - 1]!);
      const leaf = parseCertificate(leafPem, 'leaf');
      if (leaf.uris.length !== 1 || leaf.uris[0] !== uri) throw bad(`its URI SANs are [${leaf.uris.join(', ')}]`);
      if (leaf.publicKeyFingerprint !== keyFp) throw bad('it does not carry the key we sent');
      verifyChain(leafPem, intermediates, roots);
      return Object.freeze({ identity, key, certChain: Object.freeze([leafPem, ...intermediates]), roots: Object.freeze(roots), leaf, receivedAt });
    } catch (e) {
      if (e instanceof CaClientError) throw e;
      throw bad((e as Error).message, e);
    }
  }

  close(): void {
    this.client.close();
  }
}
