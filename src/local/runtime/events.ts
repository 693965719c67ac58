// The event recorder the local cluster's components share (scheduler, kubelet): core/v1 Events in
// the shape `kubectl describe` and `kubectl get events` read, after client-go's
// tools/record: an event that repeats (same object, reason, message, type and source) is not a
// new object but the old one with count+1 and a new lastTimestamp.
import type * as k8s from '@kubernetes/client-node';
import { logger } from '../../common/log.ts';

const log = logger('events');
const MAX_REMEMBERED = 4096; // client-go's LRU of aggregated events holds 4096 too

export type EventType = 'Normal' | 'Warning';

/** What an event is about: enough of the object for involvedObject. */
export interface Involved {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface EventSink {
  createNamespacedEvent(p: { namespace: string; body: k8s.CoreV1Event }): Promise<k8s.CoreV1Event>;
  replaceNamespacedEvent(p: { name: string; namespace: string; body: k8s.CoreV1Event }): Promise<k8s.CoreV1Event>;
}

export class EventRecorder {
  private readonly sink: EventSink;
  private readonly component: string;
  private readonly host: string | undefined;
  /** Aggregation key → the stored event and the chain of writes to it (kept in order). */
  private readonly seen = new Map<string, { event: k8s.CoreV1Event; write: Promise<void> }>();
  private seq = 0;

  /** `component` is source.component ("default-scheduler", "kubelet"); `host` the node, if any. */
  constructor(sink: EventSink, component: string, host?: string) {
    this.sink = sink;
    this.component = component;
    this.host = host;
  }

  /** Records an event; never throws (an event that cannot be written is logged and dropped). */
  record(obj: Involved, type: EventType, reason: string, message: string, fieldPath?: string): Promise<void> {
    const m = obj.metadata ?? {};
    const namespace = m.namespace || 'default'; // cluster-scoped objects' events live in default
    const key = [m.uid, fieldPath, type, reason, message].join('\u0000');
    const now = new Date();
    const known = this.seen.get(key);
    if (known) {
      known.event = { ...known.event, count: (known.event.count ?? 1) + 1, lastTimestamp: now };
      const next = known.write.then(async () => {
        // The newest count at the time of writing: increments made meanwhile are not lost.
        const { resourceVersion: _, ...meta } = known.event.metadata;
        const body = { ...known.event, metadata: meta };
        const stored = await this.sink.replaceNamespacedEvent({ name: meta.name!, namespace, body }).catch((err: { code?: number }) => {
          // Deleted meanwhile (its namespace went, or someone cleaned up): start over.
          if (err.code === 404) this.seen.delete(key);
          throw err;
        });
        known.event = { ...known.event, metadata: stored.metadata };
      });
      known.write = next.catch((err: unknown) => log.debug({ reason, err: String(err) }, 'event update dropped'));
      return known.write;
    }
    const event: k8s.CoreV1Event = {
      metadata: { name: `${m.name ?? 'unknown'}.${eventSuffix(now, this.seq++)}`, namespace },
      involvedObject: {
        apiVersion: obj.apiVersion ?? 'v1',
        kind: obj.kind,
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
        ...(fieldPath ? { fieldPath } : {}),
      },
      reason,
      message,
      type,
      source: { component: this.component, ...(this.host ? { host: this.host } : {}) },
      reportingComponent: this.component,
      reportingInstance: this.host ?? '',
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const entry = { event, write: Promise.resolve() };
    this.remember(key, entry);
    entry.write = this.sink
      .createNamespacedEvent({ namespace, body: event })
      .then((stored) => {
        entry.event = { ...entry.event, metadata: stored.metadata };
      })
      .catch((err: unknown) => {
        this.seen.delete(key);
        log.debug({ reason, err: String(err) }, 'event dropped');
      });
    return entry.write;
  }

  private remember(key: string, entry: { event: k8s.CoreV1Event; write: Promise<void> }): void {
    this.seen.set(key, entry);
    if (this.seen.size > MAX_REMEMBERED) this.seen.delete(this.seen.keys().next().value!);
  }
}

/** client-go names events `<object>.<unix nanoseconds in hex>`; the sequence keeps them unique. */
function eventSuffix(t: Date, seq: number): string {
  return (BigInt(t.getTime()) * 1_000_000n + BigInt(seq % 1_000_000)).toString(16);
}
