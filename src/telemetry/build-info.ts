// istio_build{component, tag}: Istio's build-info gauge (always 1), which its dashboards read for
// the versions running ("Ztunnel Versions" in the ztunnel dashboard).
import { readFileSync } from 'node:fs';
import { Gauge, type Registry } from '../common/prom.ts';

/** The checkout's (or image's) package.json version. */
function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function registerBuildInfo(registry: Registry, component: 'ztunnel' | 'waypoint' | 'agent' | 'controller'): void {
  const g = new Gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'], registers: [registry] });
  g.set({ component, tag: version() }, 1);
}
