// The settings schemas of the three processes: every variable a process reads is known to it, a
// MESH_* variable it does not read stops it with a message naming the variable and what it does
// read, values are parsed and checked, and the host's other variables are none of its business.
import test from 'ava';
import { AGENT_SETTINGS, loadAgentConfig, observerAdvertise } from '../../src/agent/config.ts';
import { CONTROLLER_SETTINGS, loadControllerSettings } from '../../src/controller/config.ts';
import { CONTROLLER_DEFAULTS } from '../../src/controller/controller.ts';
import { ConfigError, defineSettings, duration, formatDuration, hostEnv, parseDuration } from '../../src/common/settings.ts';
import { meshSettingsEnv } from '../../src/local/mesh.ts';
import { loadZtunnelSettings, ZTUNNEL_SETTINGS } from '../../src/ztunnel/config.ts';

// The agent's default cgroup comes from /proc/mounts; tests name one.
const agentBase = { MESH_POD_CGROUP: '/sys/fs/cgroup/kubepods' };
const ztunnelBase = { MESH_NODE_NAME: 'node1' };

const HOUR = 3_600_000;

// ---- durations ------------------------------------------------------------------------------------

test('durations are read as Go writes them: 30s, 90m, 24h, 1h30m, 1.5h, 500ms', (t) => {
  t.is(parseDuration('30s'), 30_000);
  t.is(parseDuration('90m'), 90 * 60_000);
  t.is(parseDuration('24h'), 24 * HOUR);
  t.is(parseDuration('1h30m'), 1.5 * HOUR);
  t.is(parseDuration('1.5h'), 1.5 * HOUR);
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('2160h'), 90 * 24 * HOUR);
  for (const bad of ['30', '24 h', 'h', '1d', '-1h', '1h-', 'forever', '1.2.3s', '']) t.is(parseDuration(bad), undefined, bad);
  t.is(formatDuration(24 * HOUR), '24h');
  t.is(formatDuration(5_400_000), '1h30m');
  t.is(formatDuration(30_000), '30s');
});

test('MESH_WORKLOAD_CERT_TTL and MESH_MAX_WORKLOAD_CERT_TTL: Istio defaults (24h, 90 days), Go durations, bad values named', (t) => {
  const d = loadControllerSettings({});
  t.is(d.workloadCertTtlMs, 24 * HOUR);
  t.is(d.maxWorkloadCertTtlMs, 2160 * HOUR);
  t.is(CONTROLLER_DEFAULTS.workloadCertTtlMs, 24 * HOUR, 'the in-process controller has the same defaults');
  t.is(CONTROLLER_DEFAULTS.maxWorkloadCertTtlMs, 2160 * HOUR);
  t.is(loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '30s' }).workloadCertTtlMs, 30_000);
  t.is(loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '90m' }).workloadCertTtlMs, 90 * 60_000);
  t.is(loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '24h', MESH_MAX_WORKLOAD_CERT_TTL: '48h' }).maxWorkloadCertTtlMs, 48 * HOUR);
  const e = t.throws(() => loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '24' }), { instanceOf: ConfigError });
  t.is(e.code, 'MESH_ERR_CONFIG');
  t.regex(e.message, /^MESH_WORKLOAD_CERT_TTL=24: expected a duration such as 30s, 90m, 24h/);
  t.throws(() => loadControllerSettings({ MESH_MAX_WORKLOAD_CERT_TTL: '90d' }), { message: /MESH_MAX_WORKLOAD_CERT_TTL=90d: .*no days: 2160h/ });
  t.throws(() => loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '0s' }), { message: /MESH_WORKLOAD_CERT_TTL=0s: expected a duration of at least 1s/ });
  t.throws(() => loadControllerSettings({ MESH_WORKLOAD_CERT_TTL: '100h', MESH_MAX_WORKLOAD_CERT_TTL: '48h' }), {
    message: 'MESH_WORKLOAD_CERT_TTL=100h is longer than MESH_MAX_WORKLOAD_CERT_TTL=48h: raise the maximum or shorten the default',
  });
});

test('a duration setting may bound its range', (t) => {
  const s = defineSettings('a test', { d: duration('MESH_TEST_D', 'd', { minMs: 1000, maxMs: HOUR }, { default: 1000, why: 'test' }) });
  t.is(s.read({ MESH_TEST_D: '59m' }).d, 59 * 60_000);
  t.throws(() => s.read({ MESH_TEST_D: '2h' }), { message: 'MESH_TEST_D=2h: expected a duration of at least 1s and at most 1h' });
});

// ---- the agent ------------------------------------------------------------------------------------

test('the agent accepts MESH_NODE_IP (the chart sets it from status.hostIP) and advertises its flows API there', (t) => {
  const c = loadAgentConfig({ ...agentBase, MESH_NODE_IP: '10.0.0.7' });
  t.is(c.nodeIp, '10.0.0.7');
  t.is(observerAdvertise(c, 4244), '10.0.0.7:4244', 'a wildcard listen address is advertised with the node IP');
  t.is(observerAdvertise(loadAgentConfig({ ...agentBase, MESH_NODE_IP: 'fd00::7' }), 4244), '[fd00::7]:4244');
  t.is(observerAdvertise(loadAgentConfig({ ...agentBase, MESH_OBSERVER_ADDRESS: '127.0.0.1:0' }), 35001), '127.0.0.1:35001', 'a concrete host is advertised as it is');
  t.is(observerAdvertise(loadAgentConfig({ ...agentBase, MESH_NODE_IP: '10.0.0.7', MESH_OBSERVER_ADVERTISE: 'flows.example:4244' }), 4244), 'flows.example:4244');
  t.is(loadAgentConfig(agentBase).nodeIp, '127.0.0.1', 'the local cluster default');
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_NODE_IP: 'node-1' }), { message: 'MESH_NODE_IP=node-1: expected an IPv4 or IPv6 address' });
});

test('the agent refuses a MESH_ variable it does not read, naming it, suggesting the near one and listing the known ones', (t) => {
  const e = t.throws(() => loadAgentConfig({ ...agentBase, MESH_FLOW_RINGS: '10' }), { instanceOf: ConfigError });
  t.is(e.code, 'MESH_ERR_CONFIG');
  t.regex(e.message, /^unknown setting MESH_FLOW_RINGS \(did you mean MESH_FLOW_RING\?\): the agent reads MESH_LOG_LEVEL, MESH_TRACE, MESH_BPFFS_DIR, /);
  for (const known of AGENT_SETTINGS.names) t.true(e.message.includes(known), `${known} is listed`);
  // ztunnel's own settings are not the agent's (each container gets its own env).
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_ADMIN_PORT: '15000' }), { message: /^unknown setting MESH_ADMIN_PORT: the agent reads / });
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_FOO: '1', MESH_MRAK: '0x1' }), { message: /^unknown settings MESH_FOO, MESH_MRAK \(did you mean MESH_MARK\?\): / });
});

test("the host's own variables are none of the agent's business, and an empty value is unset", (t) => {
  const c = loadAgentConfig({ ...agentBase, PATH: '/usr/bin', HOME: '/root', mesh_mark: 'lowercase is not ours', NODE_OPTIONS: '', MESH_MARK: '' });
  t.is(c.mark, 0x539);
});

test('the agent parses and checks its values', (t) => {
  const c = loadAgentConfig({ ...agentBase, MESH_MARK: '0x1234', MESH_EVENT_RING: '64', MESH_AGENT_SOCKET: '/run/m/agent.sock' });
  t.is(c.mark, 0x1234);
  t.is(c.eventRing, 64);
  t.is(c.zdsSocket, '/run/m/zds.sock', 'the ZDS socket is beside the control socket');
  t.is(loadAgentConfig({ ...agentBase, MESH_MARK: '4660' }).mark, 0x1234, 'decimal too');
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_MARK: '0' }), { message: 'MESH_MARK=0: expected an integer from 0x1 to 0xffffffff' });
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_MARK: '0x53a' }), { message: /MESH_MARK=0x53a is the mark of ztunnel's deliveries/ });
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_EVENT_RING: '1e3' }), { message: /MESH_EVENT_RING=1e3: expected an integer from 16 to 1048576/ });
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_CONTROLLER: 'mesh-controller' }), { message: /MESH_CONTROLLER=mesh-controller: expected host:port/ });
  t.throws(() => loadAgentConfig({ ...agentBase, MESH_LOG_LEVEL: 'loud' }), { message: 'MESH_LOG_LEVEL=loud: expected one of trace, debug, info, warn, error, fatal, silent' });
  t.is(Object.isFrozen(c), true);
  t.is(Object.isFrozen(loadAgentConfig({ ...agentBase, MESH_NODE_NAME: 'n' }).mesh), true);
});

test("the agent follows the controller when MESH_NODE_NAME is set; the CA's address follows the controller's host", (t) => {
  t.is(loadAgentConfig(agentBase).mesh, undefined);
  const m = loadAgentConfig({ ...agentBase, MESH_NODE_NAME: 'node1', MESH_CONTROLLER: '10.96.0.10:15010' }).mesh!;
  t.like(m, { nodeName: 'node1', xdsAddress: '10.96.0.10:15010', caAddress: '10.96.0.10:15012', serverName: 'mesh-controller.mesh-system.svc', trustDomain: 'cluster.local' });
  t.is(loadAgentConfig({ ...agentBase, MESH_NODE_NAME: 'n', MESH_CONTROLLER: '[fd00::10]:15010' }).mesh!.caAddress, '[fd00::10]:15012');
});

// ---- ztunnel --------------------------------------------------------------------------------------

test('ztunnel reads the settings it shares with the agent, its ports, and the mark', (t) => {
  const c = loadZtunnelSettings({ ...ztunnelBase, MESH_MARK: '0x1234', MESH_ADMIN_PORT: '0', MESH_AGENT_SOCKET: '/run/m/agent.sock' });
  t.is(c.mark, 0x1234);
  t.is(c.adminPort, 0);
  t.is(c.metricsPort, 15020);
  t.is(c.readinessPort, 15021);
  t.is(c.zdsSocket, '/run/m/zds.sock');
  t.is(c.nodeName, 'node1');
  t.is(loadZtunnelSettings(ztunnelBase).mark, 0x539);
  t.throws(() => loadZtunnelSettings({ ...ztunnelBase, MESH_ADMIN_PORT: '70000' }), { message: 'MESH_ADMIN_PORT=70000: expected a port number, 0-65535 (0 picks a free one)' });
  t.throws(() => loadZtunnelSettings({}), { instanceOf: ConfigError, message: /^MESH_NODE_NAME is not set: ztunnel needs it/ });
});

test('ztunnel refuses a MESH_ variable it does not read, naming it and listing the known ones', (t) => {
  const e = t.throws(() => loadZtunnelSettings({ ...ztunnelBase, MESH_ADMIN_PROT: '15000' }), { instanceOf: ConfigError });
  t.regex(e.message, /^unknown setting MESH_ADMIN_PROT \(did you mean MESH_ADMIN_PORT\?\): ztunnel reads /);
  for (const known of ZTUNNEL_SETTINGS.names) t.true(e.message.includes(known), `${known} is listed`);
  // The agent's own are not ztunnel's.
  t.throws(() => loadZtunnelSettings({ ...ztunnelBase, MESH_FLOW_RING: '10' }), { message: /^unknown setting MESH_FLOW_RING: ztunnel reads / });
});

// ---- the controller -------------------------------------------------------------------------------

test('the controller reads its ports, hosts and trust domain from one schema', (t) => {
  const c = loadControllerSettings({ MESH_TRUST_DOMAIN: 'example.org', MESH_LISTEN_HOST: '127.0.0.1', MESH_XDS_PORT: '0', MESH_CA_PORT: '0', MESH_RELAY_HOST: '0.0.0.0', MESH_RELAY_PORT: '0' });
  t.like(c, { trustDomain: 'example.org', host: '127.0.0.1', xdsPort: 0, caPort: 0, relayHost: '0.0.0.0', relayPort: 0 });
  t.like(loadControllerSettings({}), { trustDomain: 'cluster.local', host: '0.0.0.0', xdsPort: 15010, caPort: 15012, relayHost: '127.0.0.1', relayPort: 4245 });
  t.like(CONTROLLER_DEFAULTS, { trustDomain: 'cluster.local', xdsPort: 15010, caPort: 15012, relayPort: 4245, buildIntervalMs: 5 });
  t.throws(() => loadControllerSettings({ MESH_XDS_PORT: 'x' }), { message: /^MESH_XDS_PORT=x: expected a port number/ });
});

test('the controller refuses a MESH_ variable it does not read, naming it and listing the known ones', (t) => {
  const e = t.throws(() => loadControllerSettings({ MESH_WORKLOAD_CERT_TLL: '1h' }), { instanceOf: ConfigError });
  t.regex(e.message, /^unknown setting MESH_WORKLOAD_CERT_TLL \(did you mean MESH_WORKLOAD_CERT_TTL\?\): the controller reads /);
  for (const known of CONTROLLER_SETTINGS.names) t.true(e.message.includes(known), `${known} is listed`);
  // An agent's setting: the nearest name the controller has is offered (MESH_POD_NAME, its Lease identity).
  t.throws(() => loadControllerSettings({ MESH_NODE_NAME: 'node1' }), { message: /^unknown setting MESH_NODE_NAME \(did you mean MESH_POD_NAME\?\): the controller reads / });
  t.throws(() => loadControllerSettings({ MESH_BPFFS_DIR: '/sys/fs/bpf' }), { message: /^unknown setting MESH_BPFFS_DIR: the controller reads / });
});

// ---- all of them ------------------------------------------------------------------------------------

test('every process knows MESH_LOG_LEVEL and MESH_TRACE', (t) => {
  for (const s of [AGENT_SETTINGS, ZTUNNEL_SETTINGS, CONTROLLER_SETTINGS]) {
    t.true(s.names.includes('MESH_LOG_LEVEL'), s.component);
    t.true(s.names.includes('MESH_TRACE'), s.component);
  }
  t.deepEqual(loadZtunnelSettings({ ...ztunnelBase, MESH_TRACE: 'hbone, xds,' }).trace, ['hbone', 'xds']);
});

test('the local cluster gives the agent and ztunnel only variables they know, and they accept them', (t) => {
  const p = { node: 'node1', dir: '/tmp/s/node1', stateDir: '/tmp/s', bpffsDir: '/tmp/s/bpffs/node1', podCgroup: '/sys/fs/cgroup/x-kubepods/node1', xdsPort: 40001, caPort: 40002, logLevel: 'warn', mark: 0x1234 };
  const agentEnv = meshSettingsEnv('agent', p);
  const ztunnelEnv = meshSettingsEnv('ztunnel', p);
  for (const k of Object.keys(agentEnv)) t.true(AGENT_SETTINGS.names.includes(k), `agent: ${k}`);
  for (const k of Object.keys(ztunnelEnv)) t.true(ZTUNNEL_SETTINGS.names.includes(k), `ztunnel: ${k}`);
  const a = loadAgentConfig(agentEnv);
  const z = loadZtunnelSettings(ztunnelEnv);
  t.is(a.mark, 0x1234);
  t.is(z.mark, 0x1234, 'both get the same mark');
  t.is(a.zdsSocket, z.zdsSocket, 'and meet on the same ZDS socket');
  t.is(z.caAddress, '127.0.0.1:40002');
  // What a test or meshctl has in its own environment stays with it.
  const env = hostEnv({ PATH: '/usr/bin', MESH_DEV_STATE_DIR: '/var/lib/mesh/dev', MESH_ALLOW_SKIP: '1', MESH_TRACE: 'hbone', MESH_LOG_LEVEL: 'warn' });
  t.deepEqual(env, { PATH: '/usr/bin', MESH_TRACE: 'hbone', MESH_LOG_LEVEL: 'warn' });
  t.notThrows(() => loadZtunnelSettings({ ...env, ...ztunnelEnv }));
});

test('a schema cannot read one variable into two fields', (t) => {
  t.throws(() => defineSettings('a test', { a: duration('MESH_X', 'x', { minMs: 0 }, { optional: true }), b: duration('MESH_X', 'x', { minMs: 0 }, { optional: true }) }), {
    message: 'a test: MESH_X is read into both a and b',
  });
});
