// The node agent: owns the pinned datapath, enrols pods, and keeps recent datapath events.

import { logger } from '../common/log.ts';
import { Datapath, type DatapathEvent, setDeliveryRouting } from '../datapath/index.ts';
import type { AgentConfig } from './config.ts';
import { type EnrolledPod, Enrolment, type PodSpec } from './enrolment.ts';
import { FlowRing } from '../flows/ring.ts';
import { type AddressInfo, FlowCollector } from './flows.ts';

const log = logger('agent');

export interface AgentStatus {
  pods: number;
  eventsSeen: number;
  eventsLost: string;
  bpffsDir: string;
  podCgroup: string;
}

export class Agent {
  readonly datapath: Datapath;
  readonly enrolment: Enrolment;
  private readonly ring: DatapathEvent[] = [];
  private readonly ringSize: number;
  private seen = 0;
  /** Datapath events by "KIND\0reason" since start (the agent's metrics read them). */
  readonly eventCounts = new Map<string, number>();
  private readonly events: { close(): void };
  readonly flows: FlowRing;
  readonly collector: FlowCollector;
  /** Names addresses in flows; set once the config stream is followed. */
  resolver: (ip: string) => AddressInfo | undefined = () => undefined;
  private kernelLost = 0n;
  /** Pods enrolled at sandbox creation (before the config stream knew them), by uid → when. */
  readonly enrolledAtSandbox = new Map<string, number>();
  private readonly lostTimer: NodeJS.Timeout;

  private constructor(dp: Datapath, ringSize: number, flowRing: number, nodeName: string, sysctlNetDir?: string) {
    this.datapath = dp;
    this.enrolment = new Enrolment(dp, sysctlNetDir !== undefined ? { sysctlNetDir } : {});
    this.ringSize = ringSize;
    this.flows = new FlowRing(flowRing);
    this.collector = new FlowCollector({ ring: this.flows, nodeName, resolve: (ip) => this.resolver(ip) });
    this.kernelLost = dp.eventsLost();
    this.events = dp.readEvents((evs) => this.onEvents(evs));
    // The kernel counts what its ring could not take; say so in the flows when it grows.
    this.lostTimer = setInterval(() => {
      const now = this.datapath.eventsLost();
      if (now > this.kernelLost) this.collector.onKernelLost(Number(now - this.kernelLost));
      this.kernelLost = now;
    }, 1000);
    this.lostTimer.unref();
  }

  static async start(cfg: AgentConfig): Promise<Agent> {
    const dp = await Datapath.open({ bpffsDir: cfg.bpffsDir, cgroupPath: cfg.podCgroup, mark: cfg.mark, observe: cfg.observeUnenrolled });
    const agent = new Agent(dp, cfg.eventRing, cfg.flowRing, cfg.mesh?.nodeName ?? '', cfg.sysctlNetDir);
    log.info(
      { bpffsDir: cfg.bpffsDir, podCgroup: cfg.podCgroup, pods: agent.enrolment.list().length },
      'datapath ready',
    );
    return agent;
  }

  private onEvents(evs: DatapathEvent[]): void {
    this.seen += evs.length;
    // Building a log record per event costs even when debug is off: only when it is on.
    const debug = log.isLevelEnabled('debug');
    for (const e of evs) {
      this.ring.push(e);
      const key = `${e.kind}\0${e.reason}`;
      this.eventCounts.set(key, (this.eventCounts.get(key) ?? 0) + 1);
      if (debug) log.debug({ event: { ...e, tsNs: String(e.tsNs), sockCookie: String(e.sockCookie), netnsCookie: String(e.netnsCookie), bytesSent: String(e.bytesSent), bytesRecv: String(e.bytesRecv) } }, 'datapath event');
    }
    if (this.ring.length > this.ringSize) this.ring.splice(0, this.ring.length - this.ringSize);
    this.collector.onKernelEvents(evs);
  }

  enrol(spec: PodSpec): EnrolledPod {
    return this.enrolment.enrol(spec);
  }

  unenrol(uid: string): boolean {
    return this.enrolment.unenrol(uid);
  }

  /** The most recent datapath events, oldest first. */
  recentEvents(last = 100): DatapathEvent[] {
    return this.ring.slice(-last);
  }

  status(): AgentStatus {
    return {
      pods: this.enrolment.list().length,
      eventsSeen: this.seen,
      eventsLost: String(this.datapath.eventsLost()),
      bpffsDir: this.datapath.bpffsDir,
      podCgroup: this.datapath.cgroupPath,
    };
  }

  /**
   * Takes every pod out of capture (ztunnel hears each as a ZDS delete) and removes their
   * delivery routing: the pods talk directly again. For uninstall, before stop() and
   * Datapath.uninstall(); returns how many pods were unenrolled.
   */
  unenrolAll(): number {
    const pods = this.enrolment.list();
    for (const p of pods) {
      const netns = this.enrolment.netnsPathOf(p.uid);
      this.enrolment.unenrol(p.uid);
      if (!netns || !p.transparent) continue;
      const families = [...new Set(p.addresses.map((a) => (a.includes(':') ? 6 : 4) as 4 | 6))];
      try {
        setDeliveryRouting(netns, { enable: false, families, sysctlNetDir: this.enrolment.sysctlNetDir });
      } catch (e) {
        // The pod may be gone already; its netns went with it.
        log.debug({ uid: p.uid, err: (e as Error).message }, 'removing delivery routing failed');
      }
    }
    return pods.length;
  }

  /** Stops this process's work; capture stays in the kernel for the next agent to pick up. */
  stop(): void {
    clearInterval(this.lostTimer);
    this.events.close();
    this.datapath.close();
  }
}
