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
