// A proxy hop's trace context and spans (src/telemetry/tracing.ts) against a real OTLP receiver
// (test/helpers/otlp-receiver.ts), over each transport the OpenTelemetry exporters speak: the span
// continues the caller's trace (W3C, B3 single, B3 multi), the request leaves naming this span, and
// sampling follows the caller's flag, else the configured percentage.
import test from 'ava';
import { createTracer, propagatingTracer, type TracingSettings } from '../../src/tracing/index.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const settings = (url: string, protocol: TracingSettings['tracingProtocol'], sampling = 100): TracingSettings => ({ tracingEndpoint: url, tracingProtocol: protocol, tracingSampling: sampling, tracingFlushInterval: 20 });

for (const protocol of ['http/protobuf', 'http/json', 'grpc'] as const) {
  test(`a sampled caller's span is continued and exported over OTLP ${protocol}`, async (t) => {
    const r = await startOtlpReceiver();
    t.teardown(() => r.close());
    const tracer = await createTracer(settings(protocol === 'grpc' ? r.grpcUrl : r.httpUrl, protocol, 0), { 'service.name': 'waypoint.shop', 'mesh.reporter': 'waypoint' });
    t.true(tracer.exporting);
    // Sampling 0 %: only the caller's sampled flag gets this one recorded.
    const hop = tracer.start('web.shop.svc.cluster.local:80/*', { traceparent: `00-${TRACE}-${PARENT}-01` });
    const [, trace, span, flags] = hop.traceparent.split('-');
    t.is(trace, TRACE);
    t.not(span, PARENT, 'the request leaves naming this hop');
    t.is(flags, '01');
    t.deepEqual(Object.keys(hop.headers), ['traceparent'], 'no B3 when the caller spoke W3C');
    hop.end({ 'http.response.status_code': 503, 'mesh.source.workload': 'client' }, { durationMs: 12, error: true, statusMessage: 'UH' });
    const [got] = await r.waitFor('the span', (s) => s.length === 1);
    await tracer.shutdown();
    t.like(got, { traceId: TRACE, spanId: span, parentSpanId: PARENT, name: 'web.shop.svc.cluster.local:80/*', kind: 2, statusCode: 2, transport: protocol });
    t.like(got!.attributes, { 'http.response.status_code': 503, 'mesh.source.workload': 'client' });
    t.like(got!.resource, { 'service.name': 'waypoint.shop', 'mesh.reporter': 'waypoint' });
    t.true(Math.abs(got!.endMs - got!.startMs - 12) < 1, `duration ${got!.endMs - got!.startMs} ms`);
  });
}

test('B3 callers: single and multi header continue their trace, and get B3 back in their encoding beside traceparent', async (t) => {
  const r = await startOtlpReceiver();
  t.teardown(() => r.close());
  const tracer = await createTracer(settings(r.httpUrl, 'http/json', 0), { 'service.name': 'waypoint.shop' });
  const single = tracer.start('hop', { b3: `${TRACE}-${PARENT}-1` });
  t.regex(single.headers['b3']!, new RegExp(`^${TRACE}-[0-9a-f]{16}-1$`));
  t.is(single.headers['b3']!.split('-')[1], single.traceparent.split('-')[2], 'one span id in both encodings');
  t.is(single.headers['x-b3-traceid'], undefined);
  const multi = tracer.start('hop', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' });
  t.is(multi.headers['x-b3-traceid'], TRACE);
  t.is(multi.headers['x-b3-spanid'], multi.traceparent.split('-')[2]);
  t.is(multi.headers['x-b3-sampled'], '1');
  t.is(multi.headers['b3'], undefined);
  for (const h of [single, multi]) h.end({}, { durationMs: 1, error: false });
  const spans = await r.waitFor('both spans', (s) => s.length === 2);
  await tracer.shutdown();
  t.deepEqual(spans.map((s) => [s.traceId, s.parentSpanId]), [[TRACE, PARENT], [TRACE, PARENT]]);
});

test('sampling: a caller that did not sample is not recorded; new traces follow the percentage', async (t) => {
  const r = await startOtlpReceiver();
  t.teardown(() => r.close());
  const none = await createTracer(settings(r.httpUrl, 'http/json', 0), {});
  none.start('hop', {}).end({}, { durationMs: 1, error: false });
  const declined = none.start('hop', { traceparent: `00-${TRACE}-${PARENT}-00` });
  t.true(declined.traceparent.endsWith('-00'), 'the unsampled flag passes on');
  declined.end({}, { durationMs: 1, error: false });
  await none.shutdown();
  const all = await createTracer(settings(r.httpUrl, 'http/json', 100), {});
  const fresh = all.start('hop', {});
  t.regex(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  fresh.end({}, { durationMs: 1, error: false });
  const declinedAgain = all.start('hop', { traceparent: `00-${TRACE}-${PARENT}-00` });
  declinedAgain.end({}, { durationMs: 1, error: false });
  await all.shutdown();
  t.is(r.spans.length, 1, JSON.stringify(r.spans));
  t.is(r.spans[0]!.traceId, fresh.traceparent.split('-')[1]!);
});

test('with no endpoint nothing is recorded, but context still propagates with a fresh span id', async (t) => {
  const tracer = await createTracer({ tracingProtocol: 'http/protobuf', tracingSampling: 100, tracingFlushInterval: 1000 }, {});
  t.false(tracer.exporting);
  const hop = tracer.start('hop', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' });
  t.regex(hop.traceparent, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  t.is(hop.headers['x-b3-spanid'], hop.traceparent.split('-')[2]);
  t.not(propagatingTracer().start('hop', {}).traceparent.split('-')[1], propagatingTracer().start('hop', {}).traceparent.split('-')[1]);
});

test('the receiver refuses a body that is not OTLP', async (t) => {
  const r = await startOtlpReceiver();
  t.teardown(() => r.close());
  const res = await fetch(r.httpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resourceSpans": 7}' });
  t.is(res.status, 400);
  t.regex(await res.text(), /resourceSpans/);
});
