// Service names for local-cluster pods, without a DNS server: `ip netns exec` bind-mounts
// /etc/netns/<netns>/hosts over /etc/hosts for every process it starts in that namespace (ip-netns(8)),
// so each pod gets a hosts file listing the services' ClusterIPs under their DNS names. Files are
// rewritten in place (never replaced by rename), so running processes see changes: their bind
// mount points at the file's inode. A rewrite never empties the file first: a lookup that read
// an empty hosts file falls through to the host's DNS, unreachable from a pod, and waits out the
// resolver's 5 s timeout (one in ~3,000 connections timed out that way while services changed).
// Unchanged files are not written at all.
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
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
  /** What each pod's hosts file holds now. */
  private readonly written = new Map<string, string>();
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
    this.written.delete(netns);
    rmSync(join(this.etcNetns, netns), { recursive: true, force: true });
  }

  setServices(services: ServiceName[]): void {
    this.services = services.filter((s) => s.clusterIP && s.clusterIP !== 'None');
    for (const [netns, pod] of this.pods) this.write(netns, pod);
  }

  private write(netns: string, pod: PodHost): void {
    const text = this.render(pod);
    if (this.written.get(netns) === text) return;
    // In place, same inode: the new text over the old from the start, then the rest cut off.
    const bytes = Buffer.from(text);
    // O_CREAT without O_TRUNC (and not O_APPEND, with which Linux's pwrite ignores the offset).
    const fd = openSync(join(this.etcNetns, netns, 'hosts'), constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off, off);
      ftruncateSync(fd, bytes.length);
    } finally {
      closeSync(fd);
    }
    this.written.set(netns, text);
  }
}
