// An in-memory stand-in for what the CA needs from Kubernetes (Secrets, ConfigMaps, namespaces,
// TokenReview, pods), and helpers to mint certificates in tests.
import * as grpc from '@grpc/grpc-js';
import {
  CertificateAuthority,
  createSelfSignedRoot,
  type CaKube,
  type PodInfo,
  type TokenReviewResult,
} from '../../src/controller/ca/index.ts';
import {
  CA_TOKEN_AUDIENCE,
  caServiceClient,
  type CertificateRequest,
  type CertificateResponse,
  parseSpiffeId,
  type SpiffeId,
  type WorkloadCertificate,
} from '../../src/identity/index.ts';
import { createCsr, generateKeyPair, parseCertificate } from '../../src/tls/index.ts';
import { parseCsr } from '../../src/tls/issuer.ts';

export const NODE_SA = 'system:serviceaccount:mesh-system:mesh-node';

export class FakeKube implements CaKube {
  readonly secrets = new Map<string, Record<string, string>>();
  readonly configMaps = new Map<string, { data: Record<string, string>; labels: Record<string, string> }>();
  readonly namespaces = new Set<string>();
  readonly pods: PodInfo[] = [];
  readonly tokens = new Map<string, TokenReviewResult['user'] & { audiences?: readonly string[] }>();
  readonly reviews: { token: string; audiences: readonly string[] | undefined }[] = [];
  /** Answer like an authenticator that ignores spec.audiences: authenticated, no status.audiences. */
  ignoreAudiences = false;
  private readonly watchers = new Set<(ns: string) => void>();

  addNamespace(...names: string[]): void {
    for (const n of names) {
      if (this.namespaces.has(n)) continue;
      this.namespaces.add(n);
      for (const w of this.watchers) w(n);
    }
  }

  addPod(p: Partial<PodInfo> & { namespace: string; name: string; serviceAccountName: string; nodeName: string }): PodInfo {
    const pod = { uid: `uid-${p.namespace}-${p.name}`, phase: 'Running', ...p };
    this.pods.push(pod);
    return pod;
  }

  async readSecret(ns: string, name: string) {
    const s = this.secrets.get(`${ns}/${name}`);
    return s ? { ...s } : undefined;
  }
  async createSecret(ns: string, name: string, data: Record<string, string>) {
    if (this.secrets.has(`${ns}/${name}`)) return 'exists' as const;
    this.secrets.set(`${ns}/${name}`, { ...data });
    return 'created' as const;
  }
  async readConfigMap(ns: string, name: string) {
    const c = this.configMaps.get(`${ns}/${name}`);
    return c ? { ...c.data } : undefined;
  }
  async writeConfigMap(ns: string, name: string, data: Record<string, string>, labels: Record<string, string>) {
    this.configMaps.set(`${ns}/${name}`, { data: { ...data }, labels: { ...labels } });
  }
  async listNamespaces() {
    return [...this.namespaces];
  }
  watchNamespaces(onAdded: (ns: string) => void) {
    this.watchers.add(onAdded);
    return () => void this.watchers.delete(onAdded);
  }
  async reviewToken(token: string, audiences?: readonly string[]): Promise<TokenReviewResult> {
    this.reviews.push({ token, audiences });
    const user = this.tokens.get(token);
    if (!user) return { authenticated: false, error: 'invalid bearer token' };
    // As the API server: a token is valid only for the audiences it was minted for.
    const { audiences: minted = [], ...rest } = user;
    if (this.ignoreAudiences) return { authenticated: true, user: rest };
    if (audiences?.length && !audiences.some((a) => minted.includes(a))) return { authenticated: false, error: `token audiences ${JSON.stringify(minted)} are invalid for the target audiences ${JSON.stringify(audiences)}` };
    return { authenticated: true, user: rest, audiences: audiences?.length ? [...audiences] : [...minted] };
  }
  async getPod(ns: string, name: string) {
    return this.pods.find((p) => p.namespace === ns && p.name === name);
  }
  async podsOnNode(node: string) {
    return this.pods.filter((p) => p.nodeName === node);
  }
}

/** A token for the node agent's service account on `node`, as Kubernetes ≥ 1.30 reviews it. */
export function nodeToken(kube: FakeKube, token: string, node: string, audiences: readonly string[] = [CA_TOKEN_AUDIENCE]): string {
  kube.tokens.set(token, { username: NODE_SA, extra: { 'authentication.kubernetes.io/node-name': [node] }, audiences });
  return token;
}

/** A self-signed CA in memory (no Kubernetes), for TLS tests. */
export async function memoryCa(trustDomain = 'cluster.local'): Promise<CertificateAuthority> {
  const root = await createSelfSignedRoot(trustDomain, 86_400_000);
  return new CertificateAuthority({ signingCert: root.cert, signingKey: root.key, intermediates: [], roots: [root.cert], source: 'self-signed' });
}

/** Signs a workload certificate for `uri` directly (no gRPC), shaped like CertificateClient's answer. */
export async function mint(ca: CertificateAuthority, uri: string, ttlMs = 3_600_000, roots?: readonly string[]): Promise<WorkloadCertificate> {
  const keys = await generateKeyPair();
  const identity: SpiffeId = parseSpiffeId(uri);
  const issued = await ca.signWorkload(await parseCsr(await createCsr(keys, uri)), identity, ttlMs);
  return {
    identity,
    key: keys.privateKeyPem,
    certChain: [issued.leaf, ...ca.material.intermediates],
    roots: roots ?? ca.trustBundle,
    leaf: parseCertificate(issued.leaf),
    receivedAt: new Date(),
  };
}

/** A raw CreateCertificate call, for requests CertificateClient would never send. */
export function rawCreateCertificate(
  port: number,
  roots: readonly string[],
  req: CertificateRequest,
  token?: string,
): Promise<{ err: grpc.ServiceError | null; res: CertificateResponse | undefined }> {
  const Ctor = caServiceClient();
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createSsl(Buffer.from(roots.join(''))));
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    (client as unknown as { CreateCertificate: (r: CertificateRequest, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: CertificateResponse) => void) => void }).CreateCertificate(
      req,
      md,
      { deadline: new Date(Date.now() + 5000) },
      (err, res) => {
        client.close();
        resolve({ err, res });
      },
    );
  });
}
