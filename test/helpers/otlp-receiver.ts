// An OTLP trace receiver for tests: OTLP/HTTP on POST /v1/traces, in JSON or protobuf (OTLP
// specification, "OTLP/HTTP"), and OTLP/gRPC's TraceService/Export. Written here because none
// installs on this machine: Debian 12 packages no OpenTelemetry Collector, Jaeger or Tempo, and npm
// has only the exporters. It decodes what it receives strictly (a malformed body is a 400, so an
// exporter that sends garbage fails the test) and keeps each span normalized.
//
// In-process: `await startOtlpReceiver()`. As a pod's command: `node test/helpers/otlp-receiver.ts
// <http port> [<grpc port>]` prints one `SPAN {json}` line per span on stdout.
import * as http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** The part of opentelemetry-proto (v1, trace and common) a receiver needs; field numbers from
 * opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto. */
const PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ExportTraceServiceResponse {}
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10; Status status = 15; fixed32 flags = 16;
}
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; bytes bytes_value = 7; }
}
`;
const root = protobuf.parse(PROTO, { keepCase: true }).root;
const Request = root.lookupType('otlp.ExportTraceServiceRequest');
const Response = root.lookupType('otlp.ExportTraceServiceResponse');

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 2 SERVER, 3 CLIENT. */
  kind: number;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number | boolean>;
  /** The resource's attributes (who reported it). */
  resource: Record<string, string | number | boolean>;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** How it arrived. */
  transport: 'http/json' | 'http/protobuf' | 'grpc';
}

type Any = { string_value?: string; bool_value?: boolean; int_value?: number | string | { toNumber(): number }; double_value?: number; stringValue?: string; boolValue?: boolean; intValue?: number | string; doubleValue?: number };
type Kv = { key: string; value?: Any };

function anyValue(v: Any | undefined): string | number | boolean {
  if (!v) return '';
  const s = v.string_value ?? v.stringValue;
  if (s !== undefined) return s;
  const b = v.bool_value ?? v.boolValue;
  if (b !== undefined) return b;
  const i = v.int_value ?? v.intValue;
  if (i !== undefined) return typeof i === 'object' ? i.toNumber() : Number(i);
  return v.double_value ?? v.doubleValue ?? '';
}
const attrs = (kvs: Kv[] | undefined) => Object.fromEntries((kvs ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
const hex = (v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'string' ? v : '');
const ms = (v: unknown) => (typeof v === 'object' && v !== null && 'toNumber' in v ? (v as { toNumber(): number }).toNumber() : Number(v)) / 1e6;

/** Spans of an ExportTraceServiceRequest, from its protobuf decoding (snake_case) or its OTLP/JSON
 * form (lowerCamelCase, ids in hex: the OTLP/JSON rules). */
function normalize(req: Record<string, unknown>, transport: ReceivedSpan['transport']): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  const rss = (req['resource_spans'] ?? req['resourceSpans']) as Record<string, unknown>[] | undefined;
  if (!Array.isArray(rss)) throw new Error('no resourceSpans in the export request');
  for (const rs of rss) {
    const resource = attrs(((rs['resource'] as { attributes?: Kv[] } | undefined) ?? {}).attributes);
    for (const ss of ((rs['scope_spans'] ?? rs['scopeSpans']) as Record<string, unknown>[] | undefined) ?? []) {
      for (const s of (ss['spans'] as Record<string, unknown>[] | undefined) ?? []) {
        const status = (s['status'] as { code?: number } | undefined) ?? {};
        out.push({
          traceId: hex(s['trace_id'] ?? s['traceId']),
          spanId: hex(s['span_id'] ?? s['spanId']),
          parentSpanId: hex(s['parent_span_id'] ?? s['parentSpanId']),
          name: String(s['name'] ?? ''),
          kind: Number(s['kind'] ?? 0),
          startMs: ms(s['start_time_unix_nano'] ?? s['startTimeUnixNano']),
          endMs: ms(s['end_time_unix_nano'] ?? s['endTimeUnixNano']),
          attributes: attrs(s['attributes'] as Kv[] | undefined),
          resource,
          statusCode: Number(status.code ?? 0),
          transport,
        });
      }
    }
  }
  return out;
}

export interface OtlpReceiver {
  readonly httpUrl: string;
  readonly grpcUrl: string;
  readonly spans: ReceivedSpan[];
  /** Resolves when `pred` holds for the spans received so far (polls). */
  waitFor(what: string, pred: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(opts: { host?: string; httpPort?: number; grpcPort?: number; onSpan?: (s: ReceivedSpan) => void } = {}): Promise<OtlpReceiver> {
  const host = opts.host ?? '127.0.0.1';
  const spans: ReceivedSpan[] = [];
  const take = (list: ReceivedSpan[]) => {
    for (const s of list) {
      spans.push(s);
      opts.onSpan?.(s);
    }
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = String(req.headers['content-type'] ?? '');
      try {
        if (req.method !== 'POST' || req.url !== '/v1/traces') throw Object.assign(new Error(`${req.method} ${req.url}: only POST /v1/traces`), { status: 404 });
        if (type.startsWith('application/json')) {
          take(normalize(JSON.parse(body.toString()) as Record<string, unknown>, 'http/json'));
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } else if (type.startsWith('application/x-protobuf')) {
          take(normalize(Request.toObject(Request.decode(body), { longs: Number, bytes: Buffer }) as Record<string, unknown>, 'http/protobuf'));
          res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Buffer.from(Response.encode({}).finish()));
        } else {
          throw Object.assign(new Error(`unsupported content-type ${type}`), { status: 415 });
        }
      } catch (e) {
        res.writeHead((e as { status?: number }).status ?? 400, { 'content-type': 'text/plain' }).end((e as Error).message);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(opts.httpPort ?? 0, host, resolve));
  const httpPort = (server.address() as { port: number }).port;

  const grpcServer = new grpc.Server();
  grpcServer.addService(
    {
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: Buffer) => v,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (v: Buffer) => v,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        try {
          take(normalize(Request.toObject(Request.decode(call.request), { longs: Number, bytes: Buffer }) as Record<string, unknown>, 'grpc'));
          cb(null, Buffer.from(Response.encode({}).finish()));
        } catch (e) {
          cb({ code: grpc.status.INVALID_ARGUMENT, details: (e as Error).message });
        }
      },
    },
  );
  const grpcPort = await new Promise<number>((resolve, reject) => grpcServer.bindAsync(`${host}:${opts.grpcPort ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));

  return {
    httpUrl: `http://${host}:${httpPort}/v1/traces`,
    grpcUrl: `http://${host}:${grpcPort}`,
    spans,
    async waitFor(what, pred, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred(spans)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; received ${spans.length} spans: ${JSON.stringify(spans.slice(-5))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return spans;
    },
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
    },
  };
}

if (import.meta.main) {
  const [httpPort, grpcPort] = process.argv.slice(2).map(Number);
  const r = await startOtlpReceiver({ host: '0.0.0.0', httpPort: httpPort ?? 4318, grpcPort: grpcPort ?? 4317, onSpan: (s) => process.stdout.write(`SPAN ${JSON.stringify(s)}\n`) });
  process.stdout.write(`OTLP receiver listening: ${r.httpUrl} ${r.grpcUrl}\n`);
  process.once('SIGTERM', () => void r.close().then(() => process.exit(0)));
}
