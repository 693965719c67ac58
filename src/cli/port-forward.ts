// A local TCP port forwarded to a pod's port through the Kubernetes API, with client-node's
// PortForward (the API server's port-forward subresource, as `kubectl port-forward` uses it): each
// connection to the local port is one forwarded stream. meshctl reaches the controller's relay and
// the ztunnels' admin servers this way on a cluster it only knows through a kubeconfig; both
// listen on the pod's loopback, which a port-forward reaches and the pod network does not.
import { createServer, type Server, type Socket } from 'node:net';
import type * as k8s from '@kubernetes/client-node';

export interface Forward {
  /** 127.0.0.1:port to dial. */
  address: string;
  /** Stops listening and ends the streams open now. */
  close(): void;
}

export async function forwardPort(kc: k8s.KubeConfig, namespace: string, pod: string, port: number): Promise<Forward> {
  const { PortForward } = await import('@kubernetes/client-node');
  const forward = new PortForward(kc);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    forward.portForward(namespace, pod, [port], socket, null, socket).then(
      (ws) => {
        const w = ws as { close?: () => void; on?: (e: string, f: () => void) => void };
        w.on?.('close', () => socket.destroy());
        socket.once('close', () => w.close?.());
      },
      () => socket.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.unref();
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
