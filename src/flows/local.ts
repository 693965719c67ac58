// The Observer API over one node's flow ring: what the node agent serves (Hubble's per-node
// server). The relay (src/flows/relay.ts) serves the same API for all nodes.
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { requestMatches, validateRequest } from './filter.ts';
import type { FlowRing, RingItem } from './ring.ts';
import { type GetFlowsRequest, type GetFlowsResponse, type NodeInfo, nowNs, type ServerStatus } from './types.ts';

export interface LocalObserverOptions {
  ring: FlowRing;
  nodeName: string;
  version: string;
  /** Fills in what a flow did not know when it was made, before it is read. */
  enrich?: FlowRing['onRead'];
  /** Counters and state the ring does not know. */
  status(): { kernelEventsLost: number; ztunnelRecordsLost: number; enrolledPods: number; ztunnelConnected: boolean };
}

export function toResponse(item: RingItem, nodeName: string): GetFlowsResponse {
  if ('flow' in item) return { responseTypes: 'flow', flow: item.flow, nodeName, timeUnixNano: item.flow.timeUnixNano };
  return { responseTypes: 'lostEvents', lostEvents: item.lost, nodeName, timeUnixNano: item.timeUnixNano };
}

/** The request's history part: matching items, oldest first. */
export function history(ring: FlowRing, req: GetFlowsRequest): RingItem[] {
  const keep = (it: RingItem) => ('lost' in it ? !req.sinceUnixNano || it.timeUnixNano >= req.sinceUnixNano : requestMatches(it.flow, req));
  // hubble observe: --last N (number), --first N, --since/--until, --all; following with no
  // number and no since starts from now.
  const limit = req.number && req.number > 0 ? req.number : req.follow && !req.sinceUnixNano ? 0 : Infinity;
  const out: RingItem[] = [];
  if (limit === 0) return out;
  if (req.first) {
    for (let s = ring.oldestSeq; s < ring.nextSeq && out.length < limit; s++) {
      const it = ring.at(s);
      if (it && keep(it)) out.push(it);
    }
    return out;
  }
  for (let s = ring.nextSeq - 1; s >= ring.oldestSeq && out.length < limit; s--) {
    const it = ring.at(s);
    if (it && keep(it)) out.push(it);
  }
  return out.reverse();
}

export function localObserver(o: LocalObserverOptions): grpc.UntypedServiceImplementation {
  const started = nowNs();
  const { ring, nodeName } = o;
  // Every flow a reader can see passes here first (filters match on names too).
  if (o.enrich) ring.onRead = o.enrich;
  const lostInRing = (n: number): RingItem => ({
    seq: -1,
    timeUnixNano: nowNs(),
    lost: { source: 'FLOW_RING_BUFFER', numEventsLost: n, detail: `${n} flows were overwritten before this reader got them (the ring keeps ${ring.capacity})` },
  });
  return {
    GetFlows(call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>) {
      const req = call.request;
      try {
        validateRequest(req);
      } catch (e) {
        call.emit('error', { code: grpcStatus.INVALID_ARGUMENT, details: (e as Error).message });
        return;
      }
      // Asking for the oldest flows, or for a time the ring no longer covers, says what is gone.
      const oldest = ring.at(ring.oldestSeq);
      const oldestTime = oldest ? ('flow' in oldest ? oldest.flow.timeUnixNano : oldest.timeUnixNano) : Infinity;
      if (ring.overwritten > 0 && (req.first || (req.sinceUnixNano && req.sinceUnixNano < oldestTime))) call.write(toResponse(lostInRing(ring.overwritten), nodeName));
      for (const it of history(ring, req)) call.write(toResponse(it, nodeName));
      if (!req.follow) {
        call.end();
        return;
      }
      let cursor = ring.nextSeq;
      let scheduled = false;
      let blocked = false;
      const drain = () => {
        scheduled = false;
        while (!blocked && cursor < ring.nextSeq) {
          if (cursor < ring.oldestSeq) {
            call.write(toResponse(lostInRing(ring.oldestSeq - cursor), nodeName));
            cursor = ring.oldestSeq;
          }
          const it = ring.at(cursor++);
          if (!it || ('flow' in it && !requestMatches(it.flow, req))) continue;
          if (!call.write(toResponse(it, nodeName))) {
            blocked = true;
            call.once('drain', () => {
              blocked = false;
              drain();
            });
          }
        }
      };
      // Readers catch up after the writer's burst, as Hubble's ring readers do: one that falls a
      // whole ring behind gets a LostEvent instead of the flows it missed.
      const unsubscribe = ring.subscribe(() => {
        if (scheduled) return;
        scheduled = true;
        setImmediate(drain);
      });
      const stop = () => unsubscribe();
      call.on('cancelled', stop);
      call.on('close', stop);
      call.on('error', stop);
    },
    ServerStatus(_call: grpc.ServerUnaryCall<unknown, ServerStatus>, cb: grpc.sendUnaryData<ServerStatus>) {
      const s = o.status();
      cb(null, {
        numFlows: ring.size,
        maxFlows: ring.capacity,
        seenFlows: ring.seenFlows,
        flowsRate: ring.rate(),
        uptimeNs: nowNs() - started,
        numConnectedNodes: 1,
        numUnavailableNodes: 0,
        unavailableNodes: [],
        kernelEventsLost: s.kernelEventsLost,
        ztunnelRecordsLost: s.ztunnelRecordsLost,
        flowsOverwritten: ring.overwritten,
        version: o.version,
      });
    },
    GetNodes(_call: grpc.ServerUnaryCall<unknown, { nodes: NodeInfo[] }>, cb: grpc.sendUnaryData<{ nodes: NodeInfo[] }>) {
      const s = o.status();
      cb(null, {
        nodes: [
          {
            name: nodeName,
            address: '',
            state: 'CONNECTED',
            version: o.version,
            numFlows: ring.size,
            maxFlows: ring.capacity,
            seenFlows: ring.seenFlows,
            uptimeNs: nowNs() - started,
            error: '',
            enrolledPods: s.enrolledPods,
            ztunnelConnected: s.ztunnelConnected,
            configClients: [],
          },
        ],
      });
    },
  };
}
