// Entry point of the controller process: `node src/controller/main.ts` (the controller Deployment).
// Settings from the environment; the Kubernetes connection from KUBECONFIG or the in-cluster
// service account, as client-node's loadFromDefault() finds them.
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { CONTROLLER_DEFAULTS, Controller } from './controller.ts';

const log = logger('controller');

function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw new Error(`${name}=${raw}: expected a port number (0 picks a free one)`);
  return v;
}

async function main(): Promise<void> {
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  const controller = await Controller.start(kc, {
    trustDomain: process.env.MESH_TRUST_DOMAIN || CONTROLLER_DEFAULTS.trustDomain,
    host: process.env.MESH_LISTEN_HOST || CONTROLLER_DEFAULTS.host,
    xdsPort: port('MESH_XDS_PORT', CONTROLLER_DEFAULTS.xdsPort),
    caPort: port('MESH_CA_PORT', CONTROLLER_DEFAULTS.caPort),
    relayHost: process.env.MESH_RELAY_HOST || CONTROLLER_DEFAULTS.relayHost,
    relayPort: port('MESH_RELAY_PORT', CONTROLLER_DEFAULTS.relayPort),
  });
  // Tests and tools read the ports from here when they asked for port 0.
  process.stdout.write(`${JSON.stringify({ msg: 'listening', xdsPort: controller.xdsPort, caPort: controller.ca.port, relayPort: controller.relayPort })}\n`);
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    controller.stop().finally(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'controller failed to start');
  process.exit(1);
});
