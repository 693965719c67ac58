// Entry point of the CNI installer (the chart's mesh-cni DaemonSet, container install-cni):
// `node src/cni/install-main.ts`. Installs, keeps the install in place, and on SIGTERM (the chart
// uninstalled, or the node drained) takes it out again.
import { logger } from '../common/log.ts';
import { Installer, loadInstallConfig } from './install.ts';

const log = logger('cni-install');

try {
  const installer = new Installer(loadInstallConfig());
  installer.start();
  const stop = (signal: string) => {
    log.info({ signal }, 'uninstalling the mesh CNI plugin');
    try {
      installer.uninstall();
    } catch (e) {
      log.error({ err: (e as Error).message }, 'uninstall failed');
      process.exit(1);
    }
    process.exit(0);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
} catch (e) {
  log.fatal({ code: (e as { code?: string }).code, err: (e as Error).message }, 'CNI installer failed to start');
  process.exit(1);
}
