// Small programs the end-to-end tests run in pods (`node -e`), shared so they stay alike.

/** Answers every HTTP request on :8080 with 200 "ok". */
export const HTTP_OK_SERVER = `require('node:http').createServer((q, s) => { s.on('error', () => {}); s.end('ok'); }).listen(8080);`;

/**
 * A new connection and GET to argv[1]:8080 every 100 ms; one line per attempt on stdout:
 * "<ms since epoch> ok|status-<code>|<error code>".
 */
export const HTTP_LOOP = `
const http = require('node:http');
setInterval(() => {
  const r = http.get({ host: process.argv[1], port: 8080, path: '/', agent: false, timeout: 3000 }, (s) => {
    let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => console.log(Date.now(), s.statusCode === 200 && b === 'ok' ? 'ok' : 'status-' + s.statusCode));
  });
  r.on('timeout', () => r.destroy(new Error('timeout')));
  r.on('error', (e) => console.log(Date.now(), e.code || e.message));
}, 100);
`;

/** The lines HTTP_LOOP wrote to a pod's log: [ms since epoch, result]. */
export function loopResults(logFile: string, read: (f: string) => string): [number, string][] {
  try {
    return read(logFile)
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
      .map(([ts, r]) => [Number(ts), r ?? ''] as [number, string]);
  } catch {
    return [];
  }
}

/**
 * An HTTP server on :8080 named by argv[1] (its "version"): answers the version as the body,
 * followed by " traced" when the request carried a traceparent (a waypoint adds one) or " untraced",
 * with x-seen-method / x-seen-path / x-seen-headers (the request's x-* headers, JSON). Paths:
 * /flaky answers 503 to every other request, /slow answers after 1 s. One line per request on
 * stdout: "REQ <method> <path>".
 */
export const HTTP_ECHO_SERVER = `
let n = 0;
require('node:http').createServer((q, s) => {
  s.on('error', () => {});
  console.log('REQ', q.method, q.url);
  const seen = Object.fromEntries(Object.entries(q.headers).filter(([k]) => k.startsWith('x-') || k === 'traceparent' || k === 'host'));
  const reply = (code) => {
    s.writeHead(code, { 'x-seen-method': q.method, 'x-seen-path': q.url, 'x-seen-headers': JSON.stringify(seen), 'x-version': process.argv[1] });
    s.end(process.argv[1] + (q.headers.traceparent ? ' traced' : ' untraced'));
  };
  q.resume();
  q.on('end', () => {
    if (q.url.startsWith('/flaky')) return reply(n++ % 2 === 0 ? 503 : 200);
    if (q.url.startsWith('/slow')) return setTimeout(() => reply(200), 1000);
    reply(200);
  });
}).listen(8080);
`;

/**
 * Sends argv[1]'s JSON {url, n, method?, headers?, concurrency?, body?} requests over keep-alive
 * connections and prints one line "RESULT <json>": counts by "<status> <body>", the latency
 * percentiles (ms), a few sample response headers, and errors.
 */
export const HTTP_REQUESTS = `
const http = require('node:http');
const spec = JSON.parse(process.argv[1]);
const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency || 4 });
const counts = {}; const errors = {}; const ms = []; const samples = [];
let started = 0, done = 0;
const one = () => new Promise((resolve) => {
  const t0 = performance.now();
  const r = http.request(spec.url, { method: spec.method || 'GET', headers: spec.headers || {}, agent, timeout: 10000 }, (s) => {
    let b = ''; s.on('data', (d) => (b += d));
    s.on('end', () => {
      ms.push(performance.now() - t0);
      const k = s.statusCode + ' ' + b.slice(0, 40);
      counts[k] = (counts[k] || 0) + 1;
      if (samples.length < 3) samples.push({ status: s.statusCode, headers: s.headers, body: b.slice(0, 200) });
      resolve();
    });
  });
  r.on('timeout', () => r.destroy(new Error('timeout')));
  r.on('error', (e) => { errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1; resolve(); });
  r.end(spec.body || undefined);
});
const worker = async () => { while (started < spec.n) { started++; await one(); done++; } };
Promise.all(Array.from({ length: spec.concurrency || 4 }, worker)).then(() => {
  ms.sort((a, b) => a - b);
  const p = (q) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] || 0);
  console.log('RESULT ' + JSON.stringify({ counts, errors, p50: p(0.5), p99: p(0.99), max: p(1), samples }));
  agent.destroy();
});
`;

/**
 * A gRPC server (@grpc/grpc-js, NODE_PATH set by the pod) on :8080 with service demo.Greeter,
 * methods Hello and Bye, answering "<argv[1]> <method>" as raw bytes (no protobuf needed).
 */
export const GRPC_SERVER = `
const grpc = require('@grpc/grpc-js');
const id = (b) => b;
const m = (name) => ({ path: '/demo.Greeter/' + name, requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id });
const s = new grpc.Server();
s.addService({ Hello: m('Hello'), Bye: m('Bye') }, {
  Hello: (call, cb) => cb(null, Buffer.from(process.argv[1] + ' Hello')),
  Bye: (call, cb) => cb(null, Buffer.from(process.argv[1] + ' Bye')),
});
s.bindAsync('0.0.0.0:8080', grpc.ServerCredentials.createInsecure(), (e) => { if (e) { console.error(e); process.exit(1); } });
`;

/** Calls argv[1] (host:port) n = argv[2] times per method of demo.Greeter; prints "RESULT <json>" of answers counted. */
export const GRPC_CALLS = `
const grpc = require('@grpc/grpc-js');
const id = (b) => b;
const c = new grpc.Client(process.argv[1], grpc.credentials.createInsecure());
const counts = {};
const call = (method) => new Promise((resolve) => c.makeUnaryRequest('/demo.Greeter/' + method, id, id, Buffer.from('x'), { deadline: Date.now() + 10000 }, (e, r) => {
  const k = e ? 'error ' + e.code + ' ' + e.details : r.toString();
  counts[k] = (counts[k] || 0) + 1;
  resolve();
}));
(async () => {
  for (let i = 0; i < Number(process.argv[2]); i++) { await call('Hello'); await call('Bye'); }
  console.log('RESULT ' + JSON.stringify({ counts }));
  c.close();
})();
`;
