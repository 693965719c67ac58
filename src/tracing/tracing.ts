// Trace context and spans at a proxy hop (the waypoint; ztunnel's optional L4 spans).
//
// Every request gets a span of its own: its trace continues the caller's (W3C traceparent, else B3
// single or multi header) or starts one, and the request leaves with the context naming this
// span (W3C always; B3 too, in the caller's encoding, when the caller spoke B3) — Envoy's
// behaviour with its Zipkin/OpenTelemetry tracers, so apps instrumented with either keep joining
// traces through the mesh. Whether a span is recorded follows the caller's sampled flag, else
// MESH_TRACING_SAMPLING (ParentBased(TraceIdRatio), as Istio samples).
//
// With no OTLP endpoint nothing is recorded or exported, and the OpenTelemetry SDK and exporters
// are not even loaded (a proxy loads only what it uses); trace context is still propagated, with
// a fresh span id per hop. Spans are exported with the official OpenTelemetry JS SDK and OTLP
// exporters (HTTP protobuf or JSON, or gRPC), batched.
import { randomBytes } from 'node:crypto';
import { type Attributes, type Context, diag, DiagLogLevel, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type TextMapGetter, type TextMapSetter, trace, TraceFlags } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { logger } from '../common/log.ts';
import { formatDuration } from '../common/settings.ts';

const log = logger('tracing');

export interface TracingSettings {
  readonly tracingEndpoint?: string | undefined;
  readonly tracingProtocol: 'http/protobuf' | 'http/json' | 'grpc';
  readonly tracingSampling: number;
  readonly tracingFlushInterval: number;
}

/** Header values as Node gives them. */
export type Headers = Record<string, string | string[] | undefined>;

/** One request's span: the headers it goes upstream with, and its end. */
export interface RequestTrace {
  /** The W3C traceparent sent upstream. */
  readonly traceparent: string;
  /** Every trace header to set on the upstream request (traceparent, tracestate, B3). */
  readonly headers: Readonly<Record<string, string>>;
  /** Whether end() records anything: when not, its attributes need not be built. */
  readonly recording: boolean;
  /** Ends the span (a no-op when it is not recorded). `error`: the request failed (5xx, reset). */
  end(attributes: Attributes, opts: { durationMs: number; error: boolean; statusMessage?: string }): void;
}

export interface MeshTracer {
  /** Whether spans are recorded and exported at all (an endpoint is set). */
  readonly exporting: boolean;
  start(name: string, headers: Headers, kind?: SpanKind): RequestTrace;
  /** Sends what is batched and stops. */
  shutdown(): Promise<void>;
}

/** The B3 headers, lower-case as Node gives them (openzipkin/b3-propagation). */
const B3_HEADERS = ['b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'] as const;

const getter: TextMapGetter<Headers> = {
  keys: (h) => Object.keys(h),
  get: (h, key) => h[key.toLowerCase()],
};
const setter: TextMapSetter<Record<string, string>> = {
  set: (h, key, value) => {
    h[key.toLowerCase()] = value;
  },
};

const w3c = new W3CTraceContextPropagator();
const b3Single = new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER });
const b3Multi = new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });

/** The caller's trace context: W3C first (the mesh's own), else B3; and the B3 encoding it used. */
export function extractContext(headers: Headers): { ctx: Context; b3: B3InjectEncoding | undefined } {
  const b3 = headers['b3'] !== undefined ? B3InjectEncoding.SINGLE_HEADER : headers['x-b3-traceid'] !== undefined ? B3InjectEncoding.MULTI_HEADER : undefined;
  const fromW3c = w3c.extract(ROOT_CONTEXT, headers, getter);
  if (trace.getSpanContext(fromW3c)) return { ctx: fromW3c, b3 };
  if (b3 !== undefined) return { ctx: b3Single.extract(ROOT_CONTEXT, headers, getter), b3 };
  return { ctx: ROOT_CONTEXT, b3 };
}

/** The headers that carry `span`'s context upstream. */
function inject(span: Span, b3: B3InjectEncoding | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const ctx = trace.setSpan(ROOT_CONTEXT, span);
  w3c.inject(ctx, out, setter);
  if (b3 === B3InjectEncoding.SINGLE_HEADER) b3Single.inject(ctx, out, setter);
  else if (b3 === B3InjectEncoding.MULTI_HEADER) b3Multi.inject(ctx, out, setter);
  return out;
}

/** Removes the caller's B3 headers from a header map that is forwarded (ours replace them). */
export function dropB3(headers: Record<string, unknown>): void {
  for (const h of B3_HEADERS) delete headers[h];
}

// Random ids come from a refilled pool: one randomBytes() per request was a visible share of the
// per-request CPU in bench/waypoint-engine.ts.
let pool = Buffer.alloc(0);
let offset = 0;
/** `n` random bytes as hex; never all zeros (W3C Trace Context: such ids are invalid). */
export function randomHex(n: number): string {
  if (offset + n > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + n);
  offset += n;
  return /^0+$/.test(hex) ? randomHex(n) : hex;
}

const NOT_RECORDED = (headers: Record<string, string>): RequestTrace => ({ traceparent: headers['traceparent'] ?? '', headers, recording: false, end: () => {} });

/** Propagation only: a new span id per hop in the caller's trace (or a new trace), never recorded. */
class PropagatingTracer implements MeshTracer {
  readonly exporting = false;

  start(_name: string, headers: Headers): RequestTrace {
    const { ctx, b3 } = extractContext(headers);
    const parent = trace.getSpanContext(ctx);
    const span = trace.wrapSpanContext({
      traceId: parent?.traceId ?? randomHex(16),
      spanId: randomHex(8),
      // Not recorded here: the caller's flag passes on, so a sampled trace stays sampled downstream.
      traceFlags: parent?.traceFlags ?? TraceFlags.NONE,
      ...(parent?.traceState ? { traceState: parent.traceState } : {}),
    });
    return NOT_RECORDED(inject(span, b3));
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** Spans recorded with the OpenTelemetry SDK and exported over OTLP. */
class ExportingTracer implements MeshTracer {
  readonly exporting = true;
  readonly #tracer: import('@opentelemetry/api').Tracer;
  readonly #provider: { shutdown(): Promise<void> };

  constructor(tracer: import('@opentelemetry/api').Tracer, provider: { shutdown(): Promise<void> }) {
    this.#tracer = tracer;
    this.#provider = provider;
  }

  start(name: string, headers: Headers, kind = SpanKind.SERVER): RequestTrace {
    const { ctx, b3 } = extractContext(headers);
    const startTime = Date.now();
    const span = this.#tracer.startSpan(name, { kind, startTime }, ctx);
    const out = inject(span, b3);
    if (!span.isRecording()) return NOT_RECORDED(out);
    return {
      traceparent: out['traceparent'] ?? '',
      headers: out,
      recording: true,
      end: (attributes, opts) => {
        span.setAttributes(attributes);
        if (opts.error) span.setStatus({ code: SpanStatusCode.ERROR, ...(opts.statusMessage ? { message: opts.statusMessage } : {}) });
        span.end(startTime + opts.durationMs);
      },
    };
  }

  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}

let diagSet = false;

/** A tracer that propagates trace context and records nothing. */
export function propagatingTracer(): MeshTracer {
  return new PropagatingTracer();
}

/**
 * The tracer a proxy uses: exporting to `settings.tracingEndpoint`, or propagating only.
 * `resource`: who reports (service.name and the pod's attributes), on every span.
 */
export async function createTracer(settings: TracingSettings, resource: Attributes): Promise<MeshTracer> {
  if (!settings.tracingEndpoint) return new PropagatingTracer();
  // Loaded only when exporting: the SDK and an exporter are ~10 MB of modules a proxy without
  // tracing never needs.
  // The SDK reports export failures (collector down, refused) through its diag logger: into ours
  // (once per process: setting it again would itself warn).
  if (!diagSet) diag.setLogger(
    {
      error: (msg, ...args) => log.warn({ detail: args.map(String).join(' ') }, `span export: ${msg}`),
      warn: (msg, ...args) => log.warn({ detail: args.map(String).join(' ') }, `span export: ${msg}`),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
  diagSet = true;
  const [sdk, resources] = await Promise.all([import('@opentelemetry/sdk-trace'), import('@opentelemetry/resources')]);
  const url = settings.tracingEndpoint;
  let exporter: import('@opentelemetry/sdk-trace').SpanExporter;
  if (settings.tracingProtocol === 'grpc') exporter = new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter({ url });
  else if (settings.tracingProtocol === 'http/json') exporter = new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter({ url });
  else exporter = new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter({ url });
  const provider = new sdk.TracerProvider({
    resource: resources.resourceFromAttributes(resource),
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(settings.tracingSampling / 100) }),
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter, scheduledDelayMillis: settings.tracingFlushInterval })],
  });
  log.info({ endpoint: url, protocol: settings.tracingProtocol, samplingPercent: settings.tracingSampling, flushInterval: formatDuration(settings.tracingFlushInterval) }, 'exporting spans over OTLP');
  return new ExportingTracer(provider.getTracer('mesh'), provider);
}
