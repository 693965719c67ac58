// A pod's status as its kubelet reports it (pkg/kubelet/status, kubelet_pods.go
// generateAPIPodStatus), from what runs: phase, initContainerStatuses, containerStatuses and the
// Initialized/Ready inputs. Pure: the kubelet adds addresses and times and writes it.
import type * as k8s from '@kubernetes/client-node';
import type { ContainerState } from './containers.ts';

/** What the status needs of a running (or waiting, or ended) container. */
export interface ContainerView {
  name: string;
  st: ContainerState;
  /** podman://<name> or process://<pid>, or '' before it runs. */
  containerID: string;
}

export interface PodView {
  spec: k8s.V1PodSpec | undefined;
  initContainers: ContainerView[];
  containers: ContainerView[];
  /** Probe results by container name (prober.ts); a container without probes is absent. */
  probes: Map<string, { ready: boolean; started: boolean }>;
}

type Status = ContainerState & { image: string; imageID: string; containerID?: string };

export interface PodStatusParts {
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  initialized: boolean;
  ready: boolean;
  initContainerStatuses: Status[] | undefined;
  containerStatuses: Status[];
}

export function podStatusParts(p: PodView): PodStatusParts {
  const specs = p.spec?.containers ?? [];
  const initSpecs = p.spec?.initContainers ?? [];
  // A container not made yet (behind the init containers) waits as kubelet reports it.
  const initializing = (s: k8s.V1Container): Status => ({ name: s.name, state: { waiting: { reason: 'PodInitializing' } }, lastState: {}, ready: false, restartCount: 0, started: false, image: s.image ?? '', imageID: '' });
  const initStatuses = initSpecs.map((spec): Status => {
    const c = p.initContainers.find((x) => x.name === spec.name);
    if (!c) return initializing(spec);
    const done = 'terminated' in c.st.state && c.st.state.terminated.exitCode === 0;
    return { ...c.st, ready: done, started: 'running' in c.st.state, image: spec.image ?? '', imageID: '', containerID: c.containerID };
  });
  const initialized = initStatuses.every((s) => s.ready);
  const initFailed = p.spec?.restartPolicy === 'Never' && initStatuses.some((s) => 'terminated' in s.state && s.state.terminated.exitCode !== 0);
  const statuses = specs.map((spec): Status => {
    const c = p.containers.find((x) => x.name === spec.name);
    if (!c) return initializing(spec);
    const running = 'running' in c.st.state;
    const probe = p.probes.get(c.name);
    return { ...c.st, ready: running && (probe ? probe.ready : true), started: running && (probe ? probe.started : true), image: spec.image ?? '', imageID: '', containerID: c.containerID };
  });
  const terminated = statuses.filter((s) => 'terminated' in s.state);
  let phase: PodStatusParts['phase'] = 'Pending';
  if (statuses.some((s) => 'running' in s.state || s.restartCount > 0)) phase = 'Running';
  if (statuses.length > 0 && terminated.length === statuses.length) {
    phase = terminated.every((s) => 'terminated' in s.state && s.state.terminated.exitCode === 0) ? 'Succeeded' : 'Failed';
  }
  if (initFailed) phase = 'Failed';
  return {
    phase,
    initialized,
    ready: initialized && statuses.length > 0 && statuses.every((s) => s.ready),
    initContainerStatuses: initSpecs.length ? initStatuses : undefined,
    containerStatuses: statuses,
  };
}
