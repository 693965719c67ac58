// buildModel: one pure function from a snapshot of the cluster to the config stream's resources
// and the status of our policies. No clock, no I/O, no dependence on input order: the controller
// can rebuild on every change and let the content-hash versions (src/xds/codec.ts) decide what
// actually travels.
import type { Authorization, L7Authorization, Service, Workload } from '../../xds/index.ts';
import { parseAuthorizationPolicy } from './authz.ts';
import { compare, LabelIndex, labelsOf, nameOf, namespaceOf, sortedMap, uniqSorted, type Labels } from './kube.ts';
import { compilePeerAuthentications } from './peerauthn.ts';
import { placePolicy } from './placement.ts';
import { buildRoutes } from './routes.ts';
import { buildService, servicesByPod } from './services.ts';
import { DEFAULT_MODEL_OPTIONS, type ClusterSnapshot, type MeshModel, type ModelOptions, type PolicyStatus } from './types.ts';
import { readyServices, Waypoints, type WaypointRef } from './waypoints.ts';
import { buildWorkload, isWorkloadPod, type PodWorkload } from './workloads.ts';

export function buildModel(snap: ClusterSnapshot, options: Partial<ModelOptions> = {}): MeshModel {
  const opts = { ...DEFAULT_MODEL_OPTIONS };
  for (const [k, v] of Object.entries(options)) if (v !== undefined && v !== '') (opts as Record<string, unknown>)[k] = v;
  const nsLabels = new Map<string, Labels>(snap.namespaces.map((n) => [nameOf(n), labelsOf(n)]));
  const labelsOfNs = (ns: string): Labels => nsLabels.get(ns) ?? {};
  const waypoints = new Waypoints(snap.gateways, opts.clusterDomain, readyServices(snap.endpointSlices));

  const nsWaypoints = new Map<string, WaypointRef | null>();
  for (const ns of [...nsLabels.keys()].sort(compare)) nsWaypoints.set(ns, waypoints.resolve(`Namespace/${ns}`, ns, {}, labelsOfNs(ns)));

  const pods = snap.pods.filter(isWorkloadPod).sort((a, b) => compare(namespaceOf(a), namespaceOf(b)) || compare(nameOf(a), nameOf(b)));
  const podServices = servicesByPod(snap.services, snap.endpointSlices, new LabelIndex(pods, namespaceOf, labelsOf), opts.clusterDomain);
  const podWorkloads: PodWorkload[] = pods.map((pod) =>
    buildWorkload(pod, labelsOfNs(namespaceOf(pod)), podServices.get(`${namespaceOf(pod)}/${nameOf(pod)}`) ?? {}, waypoints, opts),
  );

  const services = new Map<string, Service>();
  const serviceWaypoints = new Map<string, WaypointRef | null>();
  for (const svc of snap.services) {
    const ns = namespaceOf(svc);
    const wp = svc.spec?.type === 'ExternalName' ? null : waypoints.resolve(`Service/${ns}/${nameOf(svc)}`, ns, labelsOf(svc), labelsOfNs(ns));
    serviceWaypoints.set(`${ns}/${nameOf(svc)}`, wp);
    const s = buildService(svc, wp, opts.clusterDomain);
    if (s) services.set(`${s.namespace}/${s.hostname}`, s);
  }

  const authorizations = new Map<string, Authorization>();
  const policyStatus = new Map<string, PolicyStatus>();
  const attach = new Map<string, string[]>();
  const attachAll = (uid: string, keys: string[]): void => {
    const list = attach.get(uid);
    if (list) list.push(...keys);
    else attach.set(uid, [...keys]);
  };
  const workloadIndex = new LabelIndex(podWorkloads, (w) => w.workload.namespace, (w) => labelsOf(w.pod));
  const placement = {
    select: (ns: string | null, selector: Labels) => workloadIndex.select(ns, selector),
    rootNamespace: opts.rootNamespace,
    nsWaypoint: (ns: string) => nsWaypoints.get(ns) ?? null,
    serviceWaypoint: (ns: string, name: string) => serviceWaypoints.get(`${ns}/${name}`) ?? null,
    waypoints,
    clusterDomain: opts.clusterDomain,
  };
  const l7Authorizations = new Map<string, L7Authorization>();
  for (const obj of snap.authorizationPolicies) {
    const p = parseAuthorizationPolicy(obj, opts.rootNamespace, opts.trustDomain);
    const r = placePolicy(obj, p, placement, opts.trustDomain);
    policyStatus.set(p.key, r.status);
    const key = `${p.namespace}/${p.name}`;
    if (r.l7Authorization) l7Authorizations.set(key, r.l7Authorization);
    if (!r.authorization) continue;
    authorizations.set(key, r.authorization);
    for (const uid of r.attachTo) attachAll(uid, [key]);
  }
  const pa = compilePeerAuthentications(snap.peerAuthentications, podWorkloads, opts.rootNamespace);
  for (const [k, a] of pa.authorizations) authorizations.set(k, a);
  for (const [k, s] of pa.status) policyStatus.set(k, s);
  for (const [uid, keys] of pa.attach) attachAll(uid, keys);

  const workloads = new Map<string, Workload>();
  for (const { workload } of podWorkloads) {
    workload.authorizationPolicies = uniqSorted(attach.get(workload.uid) ?? []);
    workloads.set(workload.uid, workload);
  }
  const routes = buildRoutes(
    { httpRoutes: snap.httpRoutes, grpcRoutes: snap.grpcRoutes ?? [], services: snap.services, referenceGrants: snap.referenceGrants ?? [], trafficPolicies: snap.trafficPolicies ?? [] },
    opts.clusterDomain,
  );
  return {
    workloads: sortedMap(workloads),
    services: sortedMap(services),
    authorizations: sortedMap(authorizations),
    policyStatus: sortedMap(policyStatus),
    waypoints: waypoints.report(),
    routes: routes.routes,
    l7Authorizations: sortedMap(l7Authorizations),
    routeStatus: routes.routeStatus,
    trafficPolicyStatus: routes.trafficPolicyStatus,
  };
}
