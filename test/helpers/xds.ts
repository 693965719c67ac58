// Helpers for config stream tests and the xds bench: resource factories, polling, a TCP relay
// that can cut connections, and an in-memory PKI for mutual TLS.
import { generateKeyPairSync } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import forge from 'node-forge';
import { type Authorization, emptyMatch, type Service, type Workload } from '../../src/xds/index.ts';

export function workload(i: number, overrides: Partial<Workload> = {}): Workload {
  const ns = `ns${i % 10}`;
  const name = `pod-${i}`;
  return {
    uid: `Kubernetes//v1/Pod/${ns}/${name}`,
    name,
    namespace: ns,
    addresses: [Buffer.from([10, 244, (i >> 8) & 0xff, i & 0xff])],
    hostname: '',
    network: '',
    trustDomain: 'cluster.local',
    serviceAccount: `sa-${i % 7}`,
    node: `node-${i % 4}`,
    tunnelProtocol: 'HBONE',
    waypoint: null,
    canonicalName: `app-${i % 20}`,
    canonicalRevision: 'v1',
    workloadType: 'DEPLOYMENT',
    workloadName: `app-${i % 20}`,
    status: 'HEALTHY',
    services: { [`${ns}/app-${i % 20}.${ns}.svc.cluster.local`]: { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'http' }] } },
    authorizationPolicies: [],
    clusterId: 'Kubernetes',
    podUid: '',
    ...overrides,
  };
}

export function service(i: number): Service {
  const ns = `ns${i % 10}`;
  return {
    name: `app-${i}`,
    namespace: ns,
    hostname: `app-${i}.${ns}.svc.cluster.local`,
    addresses: [{ network: '', address: Buffer.from([10, 96, (i >> 8) & 0xff, i & 0xff]) }],
    ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'http' }],
    subjectAltNames: [],
    waypoint: null,
  };
}

export function strictPeerAuthentication(ns: string): Authorization {
  return {
    name: 'converted-peer-authentication-default',
    namespace: ns,
    scope: 'NAMESPACE',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ ...emptyMatch(), notPrincipals: [{ presence: {} }] }] }] }],
    dryRun: false,
    origin: 'PEER_AUTHENTICATION',
  };
}

export { emptyMatch };

/** Polls until cond() holds; throws with what after timeoutMs. */
export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP relay to 127.0.0.1:target whose connections can be cut, as a network blip would. */
export class Relay {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  port = 0;

  constructor(target: number) {
    this.#server = createServer((down) => {
      const up = createConnection({ host: '127.0.0.1', port: target });
      for (const s of [down, up]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      down.pipe(up).pipe(down);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as { port: number }).port;
    return this.port;
  }

  cut(): void {
    for (const s of this.#sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.#server.close(r));
  }
}

export interface Pem {
  cert: Buffer;
  key: Buffer;
}

/** A CA, and certificates it signs, in memory (no files to clean up). */
export class TestPki {
  readonly ca: Pem;
  readonly #caCert: forge.pki.Certificate;
  readonly #caKey: forge.pki.rsa.PrivateKey;
  #serial = 1;

  constructor() {
    const { cert, key } = this.#make('mesh test root', { ca: true });
    this.#caCert = cert;
    this.#caKey = key;
    this.ca = { cert: Buffer.from(forge.pki.certificateToPem(cert)), key: Buffer.from(forge.pki.privateKeyToPem(key)) };
  }

  /** A leaf certificate with the given SANs (uri: SPIFFE ids, ip / dns: for servers). */
  issue(cn: string, sans: { uri?: string[]; ip?: string[]; dns?: string[] }): Pem {
    const altNames = [
      ...(sans.uri ?? []).map((value) => ({ type: 6, value })),
      ...(sans.dns ?? []).map((value) => ({ type: 2, value })),
      ...(sans.ip ?? []).map((ip) => ({ type: 7, ip })),
    ];
    const { cert, key } = this.#make(cn, { ca: false, altNames });
    return { cert: Buffer.from(forge.pki.certificateToPem(cert)), key: Buffer.from(forge.pki.privateKeyToPem(key)) };
  }

  #make(cn: string, opts: { ca: boolean; altNames?: object[] }) {
    // Node generates the key (forge's pure-JS RSA generation takes seconds); forge signs.
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const key = forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }) as string);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
    cert.serialNumber = (this.#serial++).toString(16).padStart(2, '0');
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + 3600_000);
    cert.setSubject([{ name: 'commonName', value: cn }]);
    cert.setIssuer(opts.ca ? [{ name: 'commonName', value: cn }] : this.#caCert.subject.attributes);
    const extensions: object[] = [{ name: 'basicConstraints', cA: opts.ca, critical: true }];
    if (opts.ca) extensions.push({ name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true });
    else {
      extensions.push({ name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true });
      extensions.push({ name: 'extKeyUsage', serverAuth: true, clientAuth: true });
      extensions.push({ name: 'subjectAltName', altNames: opts.altNames ?? [] });
    }
    cert.setExtensions(extensions);
    cert.sign(opts.ca ? key : this.#caKey, forge.md.sha256.create());
    return { cert, key };
  }
}
