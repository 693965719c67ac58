// One probe, made as kubelet makes it: httpGet and tcpSocket from the node's network namespace,
// so they arrive at the pod from the node's address (which the mesh must let through even under
// STRICT mTLS); exec inside the container. When to probe and what a result does: prober.ts.
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import type { V1Probe } from '@kubernetes/client-node';
import { socketInNetns } from '../../datapath/index.ts';

export interface ProbeTarget {
  /** The node's netns, where the probe's socket is made. */
  nodeNetnsPath: string;
  podIP: string;
  /** Named container ports, to resolve `port: http`. */
  namedPorts: Map<string, number>;
  /** Runs a command in the container, for exec probes; undefined when it cannot. */
  exec?: (command: string[]) => ChildProcess | undefined;
}

function portOf(p: number | string | undefined, t: ProbeTarget): number | undefined {
  if (typeof p === 'number') return p;
  if (p === undefined) return undefined;
  return /^\d+$/.test(p) ? Number(p) : t.namedPorts.get(p);
}

function connectFromNode(t: ProbeTarget, port: number, timeoutMs: number): net.Socket {
  const fd = socketInNetns(t.nodeNetnsPath, { family: net.isIPv6(t.podIP) ? 6 : 4 });
  const sock = new net.Socket({ fd, readable: true, writable: true });
  sock.setTimeout(timeoutMs, () => sock.destroy(new Error(`probe timed out after ${timeoutMs} ms`)));
  sock.connect({ host: t.podIP, port });
  return sock;
}

/** Runs one probe; resolves ok on success, else with kubelet's words for the failure. */
export async function runProbe(probe: V1Probe, t: ProbeTarget): Promise<{ ok: boolean; message?: string }> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  if (probe.exec?.command?.length) {
    const child = t.exec?.(probe.exec.command);
    if (!child) return { ok: false, message: 'the container is not running' };
    return new Promise((resolve) => {
      let out = '';
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-1024)));
      child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-1024)));
      child.once('error', (e) => resolve({ ok: false, message: e.message }));
      child.once('close', (code) => {
        clearTimeout(timer);
        if (timedOut) resolve({ ok: false, message: `command timed out: "${probe.exec!.command!.join(' ')}" timed out after ${timeoutMs / 1000}s` });
        else resolve(code === 0 ? { ok: true } : { ok: false, message: `command "${probe.exec!.command!.join(' ')}" exited with ${code ?? 'a signal'}${out.trim() ? `: ${out.trim()}` : ''}` });
      });
    });
  }
  if (probe.tcpSocket) {
    const port = portOf(probe.tcpSocket.port as number | string, t);
    if (!port) return { ok: false, message: `tcpSocket port ${probe.tcpSocket.port} is not a container port` };
    return new Promise((resolve) => {
      const s = connectFromNode(t, port, timeoutMs);
      s.once('connect', () => {
        s.destroy();
        resolve({ ok: true });
      });
      s.once('error', (e) => resolve({ ok: false, message: e.message }));
    });
  }
  if (probe.httpGet) {
    const port = portOf(probe.httpGet.port as number | string, t);
    if (!port) return { ok: false, message: `httpGet port ${probe.httpGet.port} is not a container port` };
    return new Promise((resolve) => {
      const req = http.get(
        {
          host: t.podIP,
          port,
          path: probe.httpGet!.path ?? '/',
          headers: Object.fromEntries((probe.httpGet!.httpHeaders ?? []).map((h) => [h.name, h.value])),
          // With no `agent` option, Node uses createConnection (with `agent: false` it would make a
          // fresh Agent and connect from the host's own namespace instead).
          createConnection: () => connectFromNode(t, port, timeoutMs),
        },
        (res) => {
          res.resume();
          const code = res.statusCode ?? 0;
          resolve(code >= 200 && code < 400 ? { ok: true } : { ok: false, message: `HTTP probe failed with statuscode: ${code}` });
        },
      );
      req.once('error', (e) => resolve({ ok: false, message: e.message }));
    });
  }
  return { ok: false, message: 'the probe has no exec, httpGet or tcpSocket handler (grpc probes are not supported by the local cluster)' };
}
