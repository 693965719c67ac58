// Editing the node's CNI configuration: our entry goes last in the primary network's chain, comes
// out again, and a second install changes nothing; a single-plugin .conf becomes a conflist.
import test from 'ava';
import { asConflist, conflistName, insertPlugin, primaryConfFile, removePlugin } from '../../src/cni/index.ts';

const BRIDGE = { cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', ranges: [[{ subnet: '10.88.0.0/16' }]] } }, { type: 'portmap', capabilities: { portMappings: true } }] };
const ENTRY = { type: 'mesh-cni', agentSocket: '/var/run/mesh/agent.sock', kubeconfig: '/etc/cni/net.d/mesh-cni-kubeconfig', excludeNamespaces: ['kube-system'] };
const text = (o: unknown) => `${JSON.stringify(o, null, 2)}\n`;

test('the primary network is the lexically first conf file, as libcni picks it', (t) => {
  t.is(primaryConfFile(['20-other.conflist', '10-calico.conflist', 'mesh-cni-kubeconfig', '05-x.conf', '.05-x.conf.mesh-tmp']), '05-x.conf');
  t.is(primaryConfFile(['mesh-cni-kubeconfig', 'README']), undefined);
});

test('install appends our entry last and keeps the rest of the chain as it was', (t) => {
  const out = JSON.parse(insertPlugin(text(BRIDGE), '10-podnet.conflist', ENTRY));
  t.deepEqual(out.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'mesh-cni']);
  t.deepEqual(out.plugins[0], BRIDGE.plugins[0]);
  t.is(out.name, 'podnet');
  t.deepEqual(out.plugins[2], ENTRY);
});

test('installing twice changes nothing, to the byte', (t) => {
  const once = insertPlugin(text(BRIDGE), 'f.conflist', ENTRY);
  t.is(insertPlugin(once, 'f.conflist', ENTRY), once);
});

test('changed settings replace our entry instead of adding a second one', (t) => {
  const once = insertPlugin(text(BRIDGE), 'f.conflist', ENTRY);
  const twice = JSON.parse(insertPlugin(once, 'f.conflist', { ...ENTRY, waitZtunnelMs: 100 }));
  t.is(twice.plugins.filter((p: { type: string }) => p.type === 'mesh-cni').length, 1);
  t.is(twice.plugins.at(-1).waitZtunnelMs, 100);
});

test('a primary CNI that rewrote its file without us gets our entry back', (t) => {
  const rewritten = text({ ...BRIDGE, plugins: [...BRIDGE.plugins, { type: 'bandwidth' }] });
  const out = JSON.parse(insertPlugin(rewritten, 'f.conflist', ENTRY));
  t.deepEqual(out.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap', 'bandwidth', 'mesh-cni']);
});

test('uninstall takes exactly our entry out; a file without it is left as it was', (t) => {
  const installed = insertPlugin(text(BRIDGE), 'f.conflist', ENTRY);
  t.deepEqual(JSON.parse(removePlugin(installed, 'f.conflist')), BRIDGE);
  const untouched = text(BRIDGE).replace(/\n/g, '\r\n');
  t.is(removePlugin(untouched, 'f.conflist'), untouched);
});

test('a single-plugin .conf becomes a conflist of that plugin, then ours', (t) => {
  const conf = { cniVersion: '0.4.0', name: 'flannel', type: 'flannel', delegate: { isDefaultGateway: true } };
  t.deepEqual(asConflist(text(conf), '10-flannel.conf'), { cniVersion: '0.4.0', name: 'flannel', plugins: [{ type: 'flannel', delegate: { isDefaultGateway: true } }] });
  const out = JSON.parse(insertPlugin(text(conf), '10-flannel.conf', ENTRY));
  t.deepEqual(out.plugins.map((p: { type: string }) => p.type), ['flannel', 'mesh-cni']);
  t.is(conflistName('10-flannel.conf'), '10-flannel.conflist');
});

test('a file that is not a CNI configuration is refused with its name', (t) => {
  t.throws(() => insertPlugin('{"plugins":', '10-x.conflist', ENTRY), { message: /10-x.conflist is not JSON/ });
  t.throws(() => insertPlugin('{"name":"x"}', '10-x.conf', ENTRY), { message: /neither "plugins" nor "type"/ });
  t.throws(() => insertPlugin(text({ name: 'x', plugins: [ENTRY] }), '10-x.conflist', ENTRY), { message: /no primary network/ });
});
