// WATCH streams: 200, chunked, one JSON event per line ({"type":…,"object":…}\n), which is how
// client-node (readline) and kubectl (json framer) read them. resourceVersion "" or "0" starts with
// the current objects as ADDED; any other value replays the kept events after it, or sends an
// in-stream ERROR Status 410 when that version has left the window (client-node's informer then
// relists, as does client-go's reflector). sendInitialEvents=true (client-go's streaming list,
// KEP-3157, which helm 4's status watcher uses) sends the current objects as ADDED and then a
// BOOKMARK annotated k8s.io/initial-events-end, which tells the client its list is complete.
import type { ServerResponse } from 'node:http';
import { BadRequestError, GoneError } from './errors.ts';
import { present } from './customresources.ts';
import { type ResourceDef, apiVersionOf, resourceKey } from './resources.ts';
import type { Matcher } from './selectors.ts';
import type { Store, StoreEvent } from './store.ts';
import { type IncludeObject, toTable } from './tables.ts';
import type { KubeObject } from './types.ts';

export interface WatchRequest {
  def: ResourceDef;
  namespace: string | undefined;
  match: Matcher;
  resourceVersion: string;
  timeoutSeconds: number;
  bookmarks: boolean;
  /** Events carry one-row Tables (kubectl get -w) instead of objects. */
  table: IncludeObject | undefined;
  /** Streaming list: the current objects first, then a BOOKMARK marking their end. */
  sendInitialEvents?: boolean;
}

export interface WatchSettings {
  /** BOOKMARK (or keep-alive) cadence; client-node aborts a watch after 30 s of silence. */
  bookmarkIntervalMs: number;
  /** A watcher this far behind on writes is cut off; it re-watches from its last version. */
  maxBufferedBytes: number;
}

// Every watcher of a kind is handed the same event in turn (Store.record calls each listener), so
// the last object's JSON serves them all: one JSON.stringify per event, not one per watcher.
// Keyed by the resourceVersion too, in case an object is changed in place and stored again.
let last: { object: KubeObject; rv: string | undefined; json: string } | undefined;
function jsonOf(object: KubeObject): string {
  const rv = object.metadata.resourceVersion;
  if (last?.object !== object || last.rv !== rv) last = { object, rv, json: JSON.stringify(object) };
  return last.json;
}

/** Serves one watch until timeout, client close or `stop()`; returns the stop function. */
export function serveWatch(store: Store, res: ServerResponse, w: WatchRequest, settings: WatchSettings, onEnd: () => void): () => void {
  const key = resourceKey(w.def);
  let backlog: StoreEvent[] = [];
  let initial: KubeObject[] = [];
  const rv = w.resourceVersion;
  // Changes up to this version are in what the client has (the initial objects or its list). A
  // write is visible to reads before its event is published (once durable), so an event may come
  // after a list that already showed its object: it is not sent twice.
  let seen: number;
  // kube-apiserver's rule: the end of the initial events is told by a bookmark, so one must be
  // allowed. The state now is not older than any resourceVersion the client names.
  if (w.sendInitialEvents && !w.bookmarks) throw new BadRequestError('sendInitialEvents requires allowWatchBookmarks=true');
  if (rv === '' || rv === '0' || w.sendInitialEvents) {
    initial = store.list(key, w.namespace).filter(w.match);
    seen = store.resourceVersion;
  } else {
    const n = Number(rv);
    if (!/^\d+$/.test(rv) || !Number.isSafeInteger(n)) throw new BadRequestError(`invalid resourceVersion "${rv}": must be a decimal number from an earlier response`);
    seen = n;
    try {
      backlog = store.eventsSince(n, rv);
    } catch (err) {
      if (!(err instanceof GoneError)) throw err;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
      res.end(`${JSON.stringify({ type: 'ERROR', object: err.toStatus() })}\n`);
      onEnd();
      return () => {};
    }
  }

  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  let sentColumns = false;
  let ended = false;

  const write = (type: string, obj: KubeObject | Record<string, unknown>) => {
    if (ended) return;
    let object: unknown = type === 'BOOKMARK' ? obj : present(w.def, obj as KubeObject);
    if (w.table && type !== 'BOOKMARK') {
      const t = toTable(w.def, [object as KubeObject], w.table, { resourceVersion: (obj as KubeObject).metadata?.resourceVersion });
      if (sentColumns) t.columnDefinitions = [];
      sentColumns = true;
      object = t;
    }
    res.write(object === obj && type !== 'BOOKMARK' ? `{"type":"${type}","object":${jsonOf(obj as KubeObject)}}\n` : `${JSON.stringify({ type, object })}\n`);
    if (res.writableLength > settings.maxBufferedBytes) stop();
  };

  const deliver = (ev: StoreEvent) => {
    if (ev.resource !== key || ev.rv <= seen) return;
    const inScope = (o: KubeObject | undefined) => o !== undefined && (w.namespace === undefined || (o.metadata.namespace ?? '') === w.namespace) && w.match(o);
    const was = ev.type !== 'ADDED' && inScope(ev.prev);
    const is = ev.type !== 'DELETED' && inScope(ev.object);
    if (ev.type === 'DELETED') {
      if (was) write('DELETED', ev.object);
    } else if (is) {
      write(was ? 'MODIFIED' : 'ADDED', ev.object);
    } else if (was) {
      // The object stopped matching the selector: to this watcher it is gone.
      write('DELETED', ev.object);
    }
  };

  for (const o of initial) write('ADDED', o);
  if (w.sendInitialEvents) {
    write('BOOKMARK', { kind: w.def.kind, apiVersion: apiVersionOf(w.def), metadata: { resourceVersion: String(seen), annotations: { 'k8s.io/initial-events-end': 'true' } } });
  }
  for (const ev of backlog) deliver(ev);
  const unsubscribe = store.subscribe(deliver);

  const beat = setInterval(() => {
    if (w.bookmarks && !w.table) {
      write('BOOKMARK', { kind: w.def.kind, apiVersion: apiVersionOf(w.def), metadata: { resourceVersion: String(store.publishedResourceVersion) } });
    } else if (!ended) {
      // Blank line: readline yields "" (client-node ignores unparsable lines) and Go's JSON
      // framer skips whitespace; either way the client's idle timer restarts.
      res.write('\n');
    }
  }, settings.bookmarkIntervalMs);
  const timeout = setTimeout(() => stop(), w.timeoutSeconds * 1000);

  function stop(): void {
    if (ended) return;
    ended = true;
    unsubscribe();
    clearInterval(beat);
    clearTimeout(timeout);
    res.end();
    onEnd();
  }
  res.on('close', stop);
  return stop;
}
