// One controller replica of the local cluster, as a process of its own (the replicas of the
// controller Deployment): the controller's settings from the environment through its schema
// (src/controller/config.ts, with leader election on), the API credential from KUBECONFIG, and
// the one thing a real cluster's replica takes from its image instead — the waypoint pod template
// of the local cluster — from a JSON file.
//   node src/local/controller-replica.ts --waypoint-template FILE
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { logger } from '../common/log.ts';
import { loadControllerSettings } from '../controller/config.ts';
import { Controller } from '../controller/controller.ts';
import type { WaypointTemplate } from '../controller/waypoint-deployer.ts';

const log = logger('controller');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'waypoint-template': { type: 'string' } } });
  const settings = loadControllerSettings();
  const waypointTemplate = values['waypoint-template'] ? (JSON.parse(readFileSync(values['waypoint-template'], 'utf8')) as WaypointTemplate) : undefined;
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  const controller = await Controller.start(kc, { ...settings, ...(waypointTemplate ? { waypointTemplate } : {}) });
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
  log.fatal({ code: e.code, err: e.message }, 'controller replica failed to start');
  process.exit(1);
});
