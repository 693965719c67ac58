// Entry point of the node agent process: `node src/agent/main.ts` (the DaemonSet's agent container).
import { logger } from '../common/log.ts';
import { Agent } from './agent.ts';
import { loadAgentConfig } from './config.ts';
import { serveControl } from './control.ts';
import { MeshSync } from './mesh-sync.ts';
import { ZdsServer } from './zds.ts';
import { readFileSync } from 'node:fs';
import { tokenFile } from '../identity/index.ts';

const log = logger('agent');

async function main(): Promise<void> {
  const cfg = loadAgentConfig();
  const agent = await Agent.start(cfg);
  const server = await serveControl(agent, cfg.controlSocket);
  // ztunnel learns the enrolled pods from here (ZDS).
  const zds = await ZdsServer.listen(agent.enrolment, cfg.zdsSocket);
  let sync: MeshSync | undefined;
  if (cfg.mesh) {
    const m = cfg.mesh;
    sync = new MeshSync(agent, {
      ...m,
      caRoots: readFileSync(m.caRootFile, 'utf8'),
      token: tokenFile(m.tokenFile),
      cgroupRoot: cfg.podCgroup,
    });
    await sync.start();
  }
  log.info({ socket: cfg.controlSocket }, 'agent ready');
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping; capture stays in place for the next agent');
    server.close();
    zds.close();
    void sync?.close();
    agent.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error & { code?: string }) => {
  log.fatal({ code: e.code, err: e.message }, 'agent failed to start');
  process.exit(1);
});
