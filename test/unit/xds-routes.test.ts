// The waypoint's resources on the config stream (src/xds/routes.ts, proto/mesh/config.proto): a
// full Route and L7Authorization come back from the codec exactly as the contract types them, and
// a waypoint that subscribes to ROUTE and L7_AUTHORIZATION receives them while a ztunnel that
// subscribes to its three types does not.
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { encodeResource, encodeResponse, deserializeResponse } from '../../src/xds/codec.ts';
import {
  AUTHORIZATION,
  ConfigClient,
  ConfigServer,
  L7_AUTHORIZATION,
  type L7Authorization,
  l7AuthorizationName,
  type MeshTypes,
  ROUTE,
  type Route,
  routeName,
  SERVICE,
  TYPE_URLS,
  WORKLOAD,
} from '../../src/xds/index.ts';
import { waitFor } from '../helpers/xds.ts';

const headers = { set: [{ name: 'x-set', value: 'a' }], add: [{ name: 'x-add', value: 'b' }], remove: ['x-remove'] };
const empty = { requestHeaderModifier: null, responseHeaderModifier: null, urlRewrite: null, requestRedirect: null, requestMirror: null };

export const FULL_ROUTE: Route = {
  service: 'shop/web.shop.svc.cluster.local',
  namespace: 'shop',
  hostname: 'web.shop.svc.cluster.local',
  rules: [
    {
      origin: 'HTTPRoute/shop/web/0',
      kind: 'HTTP',
      port: 80,
      matches: [
        {
          path: { type: 'PATH_PREFIX', value: '/api' },
          method: 'POST',
          headers: [{ type: 'EXACT', name: 'x-version', value: 'v2' }],
          queryParams: [{ type: 'REGULAR_EXPRESSION', name: 'q', value: '^a.*' }],
          grpc: null,
        },
      ],
      filters: [
        { ...empty, type: 'REQUEST_HEADER_MODIFIER', requestHeaderModifier: headers },
        { ...empty, type: 'RESPONSE_HEADER_MODIFIER', responseHeaderModifier: headers },
        { ...empty, type: 'URL_REWRITE', urlRewrite: { hostname: 'api.internal', path: { type: 'REPLACE_PREFIX_MATCH', value: '/v2' } } },
        { ...empty, type: 'REQUEST_MIRROR', requestMirror: { backend: { service: 'shop/shadow.shop.svc.cluster.local', port: 80, weight: 1 }, percent: 12.5 } },
      ],
      backends: [
        { service: 'shop/web-v1.shop.svc.cluster.local', port: 80, weight: 90 },
        { service: '', port: 80, weight: 10 },
      ],
      timeouts: { requestMs: 2000, backendRequestMs: 500 },
      retry: { attempts: 3, codes: [502, 503], backoffMs: 25 },
    },
    {
      origin: 'HTTPRoute/shop/web/1',
      kind: 'HTTP',
      port: 0,
      matches: [{ path: { type: 'EXACT', value: '/old' }, method: '', headers: [], queryParams: [], grpc: null }],
      filters: [{ ...empty, type: 'REQUEST_REDIRECT', requestRedirect: { scheme: 'https', hostname: 'new.example', path: { type: 'REPLACE_FULL_PATH', value: '/new' }, port: 8443, statusCode: 301 } }],
      backends: [],
      timeouts: { requestMs: 0, backendRequestMs: 0 },
      retry: null,
    },
    {
      origin: 'GRPCRoute/shop/echo/0',
      kind: 'GRPC',
      port: 0,
      matches: [{ path: null, method: '', headers: [], queryParams: [], grpc: { type: 'EXACT', service: 'echo.Echo', method: 'Say' } }],
      filters: [],
      backends: [{ service: 'shop/echo.shop.svc.cluster.local', port: 9000, weight: 1 }],
      timeouts: { requestMs: 0, backendRequestMs: 0 },
      retry: null,
    },
  ],
  resilience: {
    origin: 'TrafficPolicy/shop/web',
    fault: { delayMs: 200, delayPercent: 0.5, abortStatus: 503, abortPercent: 50 },
    connectionPool: { maxConnections: 100, maxPendingRequests: 10, maxRequestsPerConnection: 0 },
    outlierDetection: { consecutive5xxErrors: 5, baseEjectionMs: 30_000, maxEjectionPercent: 50 },
    rateLimit: { maxTokens: 100, tokensPerFill: 10, fillIntervalMs: 1000 },
  },
};

export const FULL_L7: L7Authorization = {
  name: 'get-only',
  namespace: 'shop',
  targets: ['Gateway/shop/waypoint', 'Service/shop/web.shop.svc.cluster.local'],
  action: 'DENY',
  rules: [
    {
      from: [{ principals: ['cluster.local/ns/shop/sa/client'], notPrincipals: ['*bad'], namespaces: ['shop'], notNamespaces: ['kube-*'], ipBlocks: ['10.0.0.0/8'], notIpBlocks: ['10.1.0.0/16'] }],
      to: [{ hosts: ['web.shop'], notHosts: ['*.evil'], ports: [80], notPorts: [81], methods: ['GET'], notMethods: ['POST'], paths: ['/api/*'], notPaths: ['/admin'] }],
      when: [{ key: 'request.headers[x-user]', values: ['alice'], notValues: ['bob'] }],
    },
    { from: [], to: [], when: [] },
  ],
  dryRun: true,
};

function roundTrip(type: string, name: string, value: unknown): unknown {
  const { bytes } = encodeResource(type, name, value);
  const decoded = deserializeResponse(encodeResponse({ systemVersionInfo: '1', typeUrl: type, removedResources: [], nonce: 'n', synced: true }, [bytes]));
  const r = decoded.resources[0]!;
  return r[r.resource!];
}

test('route-and-l7-authorization-are-registered-type-urls', (t) => {
  t.true(TYPE_URLS.includes(ROUTE));
  t.true(TYPE_URLS.includes(L7_AUTHORIZATION));
});

test('a-full-route-round-trips-through-the-codec-as-the-contract-types-it', (t) => {
  t.deepEqual(roundTrip(ROUTE, routeName(FULL_ROUTE), FULL_ROUTE), FULL_ROUTE);
  const bare: Route = { service: 'shop/a.shop.svc.cluster.local', namespace: 'shop', hostname: 'a.shop.svc.cluster.local', rules: [], resilience: null };
  t.deepEqual(roundTrip(ROUTE, routeName(bare), bare), bare);
  const partial: Route = { ...bare, resilience: { origin: 'TrafficPolicy/shop/a', fault: null, connectionPool: null, outlierDetection: null, rateLimit: { maxTokens: 1, tokensPerFill: 1, fillIntervalMs: 10 } } };
  t.deepEqual(roundTrip(ROUTE, routeName(partial), partial), partial);
});

test('a-full-l7-authorization-round-trips-through-the-codec-as-the-contract-types-it', (t) => {
  t.deepEqual(roundTrip(L7_AUTHORIZATION, l7AuthorizationName(FULL_L7), FULL_L7), FULL_L7);
});

test('a-waypoint-subscribed-to-routes-gets-them-and-a-ztunnel-does-not', async (t) => {
  const server = new ConfigServer<MeshTypes>({ pushIntervalMs: 5 });
  const port = await server.listen('127.0.0.1:0', grpc.ServerCredentials.createInsecure());
  t.teardown(() => server.close(100));
  server.batch((tx) => {
    tx.set(ROUTE, routeName(FULL_ROUTE), FULL_ROUTE);
    tx.set(L7_AUTHORIZATION, l7AuthorizationName(FULL_L7), FULL_L7);
  });
  const client = (id: string, types: readonly (keyof MeshTypes)[]) => {
    const c = new ConfigClient<MeshTypes>({ address: `127.0.0.1:${port}`, credentials: grpc.credentials.createInsecure(), node: { id, name: 'node-a', cluster: 'Kubernetes' }, types, backoff: { initialMs: 20, maxMs: 200 } }).start();
    t.teardown(() => c.close());
    return c;
  };
  const waypoint = client('waypoint~node-a~x', [ROUTE, L7_AUTHORIZATION]);
  const ztunnel = client('ztunnel~node-a~y', [WORKLOAD, SERVICE, AUTHORIZATION]);
  await Promise.all([waypoint.ready(5000), ztunnel.ready(5000)]);
  await waitFor(() => waypoint.entries(ROUTE).size === 1 && waypoint.entries(L7_AUTHORIZATION).size === 1, 'the waypoint resources');
  t.deepEqual(waypoint.get(ROUTE, routeName(FULL_ROUTE)), FULL_ROUTE);
  t.deepEqual(waypoint.get(L7_AUTHORIZATION, 'shop/get-only'), FULL_L7);
  // The ztunnel's stream carries only the types it asked for.
  const zt = server.status().clients.find((c) => c.node?.id.startsWith('ztunnel~'));
  t.deepEqual(Object.keys(zt?.types ?? {}).sort(), [AUTHORIZATION, SERVICE, WORKLOAD].sort());
});
