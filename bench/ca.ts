// CA cost per certificate, in one process on this host:
//
//   node bench/ca.ts [--n 300] [--concurrency 16]
//
// keygen     ECDSA P-256 key pair (WebCrypto) — what the node pays per identity and refresh
// csr        PKCS#10 with the URI SAN, signed with that key
// sign       CA side: parse + verify the CSR, sign the leaf
// issue      full CreateCertificate over gRPC+TLS on 127.0.0.1 (keygen, CSR, TokenReview fake,
//            impersonation check, sign, client-side chain check), sequential, then with
//            --concurrency calls in flight (the node's refresh after a CA restart)
// peer id    URI SAN → SPIFFE id of a peer certificate (the per-handshake cost without the cache)
import { parseArgs } from 'node:util';
import { CertificateAuthority, createSelfSignedRoot, startCa } from '../src/controller/ca/index.ts';
import { CertificateClient, parseSpiffeId } from '../src/identity/index.ts';
import { createCsr, generateKeyPair, parseCertificate } from '../src/tls/index.ts';
import { parseCsr } from '../src/tls/issuer.ts';
import { FakeKube, nodeToken } from '../test/helpers/ca.ts';

const { values } = parseArgs({ options: { n: { type: 'string', default: '300' }, concurrency: { type: 'string', default: '16' } } });
const N = Number(values.n);
const C = Number(values.concurrency);
const URI = 'spiffe://cluster.local/ns/shop/sa/cart';

function stats(name: string, ms: number[]): void {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(2);
  console.log(`${name.padEnd(22)} n=${String(s.length).padEnd(5)} p50 ${q(0.5)} ms  p99 ${q(0.99)} ms  mean ${(s.reduce((a, b) => a + b, 0) / s.length).toFixed(2)} ms`);
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = performance.now();
  const r = await fn();
  return [performance.now() - t, r];
}

const root = await createSelfSignedRoot('cluster.local', 86_400_000);
const ca = new CertificateAuthority({ signingCert: root.cert, signingKey: root.key, intermediates: [], roots: [root.cert], source: 'self-signed' });
const id = parseSpiffeId(URI);
const kg: number[] = [];
const cs: number[] = [];
const sg: number[] = [];
let leaf = '';
for (let i = 0; i < N; i++) {
  const [a, keys] = await time(() => generateKeyPair());
  const [b, csr] = await time(() => createCsr(keys, URI));
  const [c, issued] = await time(async () => ca.signWorkload(await parseCsr(csr), id, 86_400_000));
  kg.push(a);
  cs.push(b);
  sg.push(c);
  leaf = issued.leaf;
}
stats('keygen (P-256)', kg);
stats('csr', cs);
stats('sign (parse+verify+sign)', sg);
const pid: number[] = [];
for (let i = 0; i < N; i++) pid.push((await time(async () => parseSpiffeId(parseCertificate(leaf).uris[0]!)))[0]);
stats('peer id from cert', pid);

const kube = new FakeKube();
kube.addNamespace('mesh-system', 'shop');
kube.addPod({ namespace: 'shop', name: 'cart-1', serviceAccountName: 'cart', nodeName: 'node-a' });
for (let i = 0; i < 100; i++) kube.addPod({ namespace: `ns${i}`, name: `p${i}`, serviceAccountName: 'sa', nodeName: 'node-a' });
const running = await startCa(kube, { trustDomain: 'cluster.local', host: '127.0.0.1', port: 0 });
const client = new CertificateClient({ address: `127.0.0.1:${running.port}`, caRoots: running.authority.trustBundle, token: () => nodeToken(kube, 'tok', 'node-a') });
await client.fetch(id); // connect
const seq: number[] = [];
for (let i = 0; i < N; i++) seq.push((await time(() => client.fetch(id)))[0]);
stats('issue over gRPC (seq)', seq);
const par: number[] = [];
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: C }, async () => {
    while (next++ < N) par.push((await time(() => client.fetch(id)))[0]);
  }),
);
const wall = performance.now() - t0;
stats(`issue over gRPC (c=${C})`, par);
console.log(`throughput ${(N / (wall / 1000)).toFixed(0)} certs/s with ${C} in flight; RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`);
client.close();
if (globalThis.gc) { globalThis.gc(); console.log(`after GC: heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB, RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`); }
await running.close();
