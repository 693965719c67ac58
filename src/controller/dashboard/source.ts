// Where the dashboard's flows come from: the controller's own relay, dialled like any Observer
// client (meshctl flows does the same), so the dashboard needs nothing the relay does not serve.
import * as grpc from '@grpc/grpc-js';
import { observerClient, type ObserverClient } from '../../flows/server.ts';
import type { Flow, GetFlowsRequest, GetFlowsResponse } from '../../flows/types.ts';
import { nowNs } from '../../flows/types.ts';

export interface FlowSource {
  /** Streams new flows until stop() (or the stream ends, then `onEnd`). */
  follow(onFlow: (f: Flow) => void, onEnd: (why: string) => void): { stop(): void };
  /** One history request: flows and the notes (node status, lost events) that came with them. */
  history(req: GetFlowsRequest, timeoutMs?: number): Promise<GetFlowsResponse[]>;
  close(): void;
}

/** The relay at `address` (host:port), plaintext as it serves. */
export function relayFlowSource(address: string): FlowSource {
  const client: ObserverClient = observerClient(address, grpc.credentials.createInsecure());
  return {
    follow(onFlow, onEnd) {
      const stream = client.GetFlows({ follow: true, whitelist: [], blacklist: [], sinceUnixNano: nowNs() } satisfies GetFlowsRequest);
      let stopped = false;
      stream.on('data', (r: GetFlowsResponse) => {
        if (r.responseTypes === 'flow') onFlow(r.flow);
      });
      stream.on('error', (e: grpc.ServiceError) => {
        if (!stopped) onEnd(e.details || e.message);
        stopped = true;
      });
      stream.on('end', () => {
        if (!stopped) onEnd('the relay ended the stream');
        stopped = true;
      });
      return {
        stop() {
          stopped = true;
          stream.cancel();
        },
      };
    },
    history(req, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const out: GetFlowsResponse[] = [];
        const stream = client.GetFlows({ ...req, follow: false }, { deadline: Date.now() + timeoutMs });
        stream.on('data', (r: GetFlowsResponse) => out.push(r));
        stream.on('error', (e: grpc.ServiceError) => reject(new Error(`the flow relay at ${address}: ${e.details || e.message}`)));
        stream.on('end', () => resolve(out));
      });
    },
    close() {
      client.close();
    },
  };
}
