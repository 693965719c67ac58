// Entry point of the controller process: `node src/controller/main.ts` (the controller Deployment;
// the local cluster's replicas too). Settings from the environment (src/controller/config.ts); the
// Kubernetes connection from KUBECONFIG or the in-cluster service account, as client-node's
// loadFromDefault() finds them. `--waypoint-template FILE` (JSON) is the waypoint pod template
// where it does not come from the image: the local cluster's replicas run waypoints as its own
// processes.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { loadControllerSettings } from './config.ts';
import { Controller } from './controller.ts';
import type { WaypointTemplate } from './waypoint-deployer.ts';

const log = logger('controller');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'waypoint-template': { type: 'string' } } });
  const settings = loadControllerSettings();
  const waypointTemplate = values['waypoint-template'] ? (JSON.parse(readFileSync(values['waypoint-template'], 'utf8')) as WaypointTemplate) : undefined;
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  const controller = await Controller.start(kc, { ...settings, ...(waypointTemplate ? { waypointTemplate } : {}) });
  // Tests and tools read the ports from here when they asked for port 0.
  process.stdout.write(
    `${JSON.stringify({ msg: 'listening', xdsPort: controller.xdsPort, caPort: controller.ca.port, relayPort: controller.relayPort, dashboardPort: controller.dashboard?.port, identity: controller.elector?.settings.identity })}\n`,
  );
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
