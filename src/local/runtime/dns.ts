// Service names for local-cluster pods, without a DNS server: `ip netns exec` bind-mounts
// /etc/netns/<netns>/hosts over /etc/hosts for every process it starts in that namespace (ip-netns(8)),
// so each pod gets a hosts file listing the services' ClusterIPs under their DNS names. Files are
// rewritten in place (never replaced by rename), so running processes see changes: their bind
// mount points at the file's inode.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ServiceName {
  name: string;
  namespace: string;
  clusterIP: string;
}

interface PodHost {
  ip: string;
  hostname: string;
  namespace: string;
}

export const CLUSTER_DOMAIN = 'cluster.local';

export class HostsWriter {
  private readonly etcNetns: string;
  private readonly pods = new Map<string, PodHost>();
  private services: ServiceName[] = [];

  constructor(etcNetns = '/etc/netns') {
    this.etcNetns = etcNetns;
  }

  /** The hosts file for one pod: itself, then every service (short names only in its namespace). */
  render(pod: PodHost): string {
    const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${pod.ip}\t${pod.hostname}`];
    for (const s of [...this.services].sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))) {
      const names = [`${s.name}.${s.namespace}.svc.${CLUSTER_DOMAIN}`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
      if (s.namespace === pod.namespace) names.push(s.name);
      lines.push(`${s.clusterIP}\t${names.join(' ')}`);
    }
    return `# written by the mesh local cluster\n${lines.join('\n')}\n`;
  }

  addPod(netns: string, pod: PodHost): void {
    this.pods.set(netns, pod);
    mkdirSync(join(this.etcNetns, netns), { recursive: true });
    this.write(netns, pod);
  }

  removePod(netns: string): void {
    this.pods.delete(netns);
    rmSync(join(this.etcNetns, netns), { recursive: true, force: true });
  }

  setServices(services: ServiceName[]): void {
    this.services = services.filter((s) => s.clusterIP && s.clusterIP !== 'None');
    for (const [netns, pod] of this.pods) this.write(netns, pod);
  }

  private write(netns: string, pod: PodHost): void {
    writeFileSync(join(this.etcNetns, netns, 'hosts'), this.render(pod)); // in place: O_TRUNC, same inode
  }
}
