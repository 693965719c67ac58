// `meshctl waypoint apply|generate|list|status|delete`: waypoints (L7 proxies) declared as Gateway
// API Gateways of class mesh-waypoint, shaped like `istioctl waypoint`. meshctl only writes the
// Gateway and the namespace label; the controller deploys the waypoint (a Deployment, Service and
// ServiceAccount owned by the Gateway) and reports it Programmed. What is shown is computed in
// ../waypoint.ts; who uses a waypoint and whether it serves them is the controller model's verdict.
import type * as k8s from '@kubernetes/client-node';
import { Command, InvalidArgumentError, Option } from 'commander';
import { LABEL_DATAPLANE_MODE, LABEL_USE_WAYPOINT, LABEL_USE_WAYPOINT_NAMESPACE, type KubeObject } from '../../controller/model/index.ts';
import { listGateways, readWaypointView, requireGatewayApi, waypointProblem } from '../cluster.ts';
import { DEFAULT_STATE_DIR } from '../endpoints.ts';
import { apiError, apiMessage, contextNamespace, httpStatus, KubeCommandError, loadKubeConfig } from '../kube.ts';
import {
  checkWaypointName,
  conditionSummary,
  DEFAULT_WAYPOINT_NAME,
  type DeploymentFacts,
  deletionWarning,
  formatMs,
  GATEWAY_GROUP,
  GATEWAY_PLURAL,
  GATEWAY_VERSION,
  generateYaml,
  isWaypoint,
  LABEL_GATEWAY_NAME,
  listRows,
  parseDuration,
  programmed,
  renderList,
  renderStatus,
  renderWaitTimeout,
  type StatusFacts,
  TRAFFIC_TYPES,
  type TrafficType,
  waypointGateway,
} from '../waypoint.ts';
import { renderData } from '../ztunnel-config-format.ts';

// How often --wait reads the Gateway: a waypoint Deployment takes seconds to become ready, so
// half a second is prompt without loading the API server.
const WAIT_POLL_MS = 500;
const FIELD_MANAGER = 'meshctl';

interface KubeOptions {
  kubeconfig?: string;
  context?: string;
  stateDir: string;
  namespace?: string;
}

interface ApplyOptions extends KubeOptions {
  name: string;
  for: TrafficType;
  enrollNamespace?: boolean;
  overwrite?: boolean;
  wait?: boolean;
  timeout: number;
}

function waypointName(value: string): string {
  const problem = checkWaypointName(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new InvalidArgumentError('expected a duration such as 60s, 2m or 1m30s');
  return ms;
}

function kubeOptions(cmd: Command, namespaceHelp = "the waypoint's namespace (default: the kubeconfig context's, else \"default\")"): Command {
  return cmd
    .addOption(new Option('-n, --namespace <namespace>', namespaceHelp))
    .addOption(new Option('--kubeconfig <file>', 'kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, else the local cluster\'s)'))
    .addOption(new Option('--context <name>', 'kubeconfig context to use (default: its current context)'))
    .addOption(new Option('--state-dir <dir>', "the local cluster's state directory, whose kubeconfig is the last resort (env MESH_DEV_STATE_DIR)").default(DEFAULT_STATE_DIR));
}

const nameOption = () => new Option('--name <name>', 'the waypoint (Gateway) name').default(DEFAULT_WAYPOINT_NAME).argParser(waypointName);
const forOption = () =>
  new Option('--for <traffic>', 'which traffic the waypoint takes: service (to Services that use it), workload (to pods that use it), all, or none (label mesh.io/waypoint-for)')
    .choices([...TRAFFIC_TYPES])
    .default('service');

async function connect(o: KubeOptions): Promise<{ kc: k8s.KubeConfig; namespace: string }> {
  const kc = await loadKubeConfig(o);
  return { kc, namespace: o.namespace || contextNamespace(kc) };
}

const gatewayParams = (namespace: string, name: string) => ({ group: GATEWAY_GROUP, version: GATEWAY_VERSION, plural: GATEWAY_PLURAL, namespace, name });

async function readGateway(kc: k8s.KubeConfig, namespace: string, name: string): Promise<KubeObject | undefined> {
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  try {
    return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject(gatewayParams(namespace, name))) as KubeObject;
  } catch (err) {
    if (httpStatus(err) === 404) return undefined;
    throw apiError(`reading Gateway ${namespace}/${name}`, kc, err);
  }
}

async function readNamespace(kc: k8s.KubeConfig, namespace: string): Promise<k8s.V1Namespace> {
  const { CoreV1Api } = await import('@kubernetes/client-node');
  try {
    return await kc.makeApiClient(CoreV1Api).readNamespace({ name: namespace });
  } catch (err) {
    if (httpStatus(err) === 404) {
      throw new KubeCommandError('MESH_ERR_NAMESPACE_NOT_FOUND', `namespace "${namespace}" does not exist: create it with \`kubectl create namespace ${namespace}\`, or choose another with -n`);
    }
    throw apiError(`reading namespace ${namespace}`, kc, err);
  }
}

function say(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

function progress(s: string): void {
  process.stderr.write(`${s}\n`);
}

// ---- apply ------------------------------------------------------------------------------------

async function apply(o: ApplyOptions): Promise<void> {
  const { kc, namespace } = await connect(o);
  const key = `${namespace}/${o.name}`;
  await requireGatewayApi(kc);
  const ns = await readNamespace(kc, namespace);
  // Refuse before changing anything: a Gateway of another class is not ours to turn into a
  // waypoint, and a namespace enrolled elsewhere is moved only when asked.
  const existing = await readGateway(kc, namespace, o.name);
  if (existing && !isWaypoint(existing) && !o.overwrite) {
    const cls = (existing.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName ?? '';
    throw new KubeCommandError('MESH_ERR_WAYPOINT_CONFLICT', `Gateway ${key} exists with gatewayClassName "${cls}": it is not a waypoint; choose another --name, or pass --overwrite to make it one`);
  }
  if (o.enrollNamespace && !o.overwrite) {
    const labels = ns.metadata?.labels ?? {};
    const current = labels[LABEL_USE_WAYPOINT];
    const currentNs = labels[LABEL_USE_WAYPOINT_NAMESPACE];
    if ((current && current !== o.name) || (currentNs && currentNs !== namespace)) {
      throw new KubeCommandError(
        'MESH_ERR_WAYPOINT_CONFLICT',
        `namespace ${namespace} already uses waypoint ${currentNs || namespace}/${current ?? o.name}: pass --overwrite to switch it to ${key}`,
      );
    }
  }
  const k = await import('@kubernetes/client-node');
  try {
    // Server-side apply (kubectl apply --server-side): creates or updates in one request; with
    // --overwrite it takes over fields another manager set (force=true).
    await kc.makeApiClient(k.CustomObjectsApi).patchNamespacedCustomObject(
      { ...gatewayParams(namespace, o.name), body: waypointGateway({ name: o.name, namespace, trafficType: o.for }), fieldManager: FIELD_MANAGER, force: Boolean(o.overwrite) },
      k.setHeaderOptions('Content-Type', k.PatchStrategy.ServerSideApply),
    );
  } catch (err) {
    if (httpStatus(err) === 409) {
      throw new KubeCommandError('MESH_ERR_WAYPOINT_CONFLICT', `Gateway ${key} has fields another manager owns (${apiMessage(err)}): pass --overwrite to take them over`, { cause: err });
    }
    throw apiError(`applying Gateway ${key}`, kc, err);
  }
  say(`waypoint ${key} applied`);
  if (o.enrollNamespace) {
    try {
      await kc.makeApiClient(k.CoreV1Api).patchNamespace(
        // The waypoint is in this namespace: a use-waypoint-namespace pointing elsewhere would send
        // the label to another namespace's Gateway of the same name.
        { name: namespace, body: { metadata: { labels: { [LABEL_USE_WAYPOINT]: o.name, [LABEL_USE_WAYPOINT_NAMESPACE]: null } } } },
        k.setHeaderOptions('Content-Type', k.PatchStrategy.MergePatch),
      );
    } catch (err) {
      throw apiError(`labelling namespace ${namespace} ${LABEL_USE_WAYPOINT}=${o.name}`, kc, err);
    }
    say(`namespace ${namespace} labeled with "${LABEL_USE_WAYPOINT}: ${o.name}"`);
    // As istioctl warns: the label does nothing for pods ztunnel does not capture.
    if (ns.metadata?.labels?.[LABEL_DATAPLANE_MODE] !== 'ambient') {
      progress(`warning: namespace ${namespace} is not in the mesh (no ${LABEL_DATAPLANE_MODE}=ambient label): ztunnel does not capture its pods, so the waypoint cannot stand in front of them; add it with \`kubectl label namespace ${namespace} ${LABEL_DATAPLANE_MODE}=ambient\``);
    }
  }
  if (o.wait) await waitProgrammed(kc, namespace, o.name, o.timeout);
}

/** Polls the Gateway until Programmed=True, printing each change of its conditions; on timeout, why. */
async function waitProgrammed(kc: k8s.KubeConfig, namespace: string, name: string, timeoutMs: number): Promise<void> {
  const key = `${namespace}/${name}`;
  const start = Date.now();
  progress(`waiting up to ${formatMs(timeoutMs)} for waypoint ${key} to be Programmed…`);
  let last = '';
  let gw: KubeObject | undefined;
  for (;;) {
    gw = await readGateway(kc, namespace, name);
    const summary = gw ? conditionSummary(gw) : 'the Gateway does not exist';
    if (summary !== last) {
      progress(`  ${formatMs(Math.round((Date.now() - start) / 100) * 100)}: ${summary}`);
      last = summary;
    }
    if (gw && programmed(gw) === 'True') {
      say(`waypoint ${key} is ready (Programmed=True after ${formatMs(Math.round((Date.now() - start) / 100) * 100)})`);
      return;
    }
    if (Date.now() - start >= timeoutMs) break;
    await new Promise((r) => setTimeout(r, Math.min(WAIT_POLL_MS, Math.max(0, timeoutMs - (Date.now() - start)))));
  }
  // Why: the controller model's reason, from the Gateway, its Service's endpoints and the rest.
  let problem = '';
  try {
    const view = await readWaypointView(kc);
    problem = waypointProblem(view.snapshot, namespace, name);
  } catch {
    // The conditions alone still say a lot.
  }
  process.stderr.write(renderWaitTimeout(gw, key, timeoutMs, problem));
  throw new KubeCommandError('MESH_ERR_WAYPOINT_TIMEOUT', `waypoint ${key} is not ready after ${formatMs(timeoutMs)}`);
}

function applyCommand(): Command {
  const cmd = new Command('apply')
    .summary('create or update a waypoint (a Gateway of class mesh-waypoint)')
    .description(
      'Creates or updates (server-side apply) the Gateway that declares a waypoint: class mesh-waypoint, ' +
        'one listener {name: mesh, port: 15008, protocol: HBONE}, label mesh.io/waypoint-for. The controller ' +
        'deploys it (Deployment, Service, ServiceAccount owned by the Gateway) and sets Programmed=True once it is ready. ' +
        'Until then, traffic of the namespaces, services and pods that use it is refused (fail closed), never sent around it.',
    );
  kubeOptions(cmd)
    .addOption(nameOption())
    .addOption(forOption())
    .option('--enroll-namespace', `also label the namespace ${LABEL_USE_WAYPOINT}=<name>, so the namespace's services and pods use the waypoint`)
    .option('--overwrite', 'switch a namespace already enrolled in another waypoint, and take over a Gateway of that name whatever its class or field managers')
    .option('--wait', 'wait until the Gateway is Programmed (its Deployment is ready), printing its conditions as they change')
    .addOption(new Option('--timeout <duration>', 'with --wait: how long to wait (e.g. 60s, 2m)').default(60_000, '60s').argParser(duration));
  return cmd
    .addHelpText(
      'after',
      `
Examples:
  meshctl waypoint apply -n shop --enroll-namespace --wait   # a waypoint for every service in shop
  meshctl waypoint apply -n shop --name reviews-wp --for workload
  kubectl -n shop label service reviews ${LABEL_USE_WAYPOINT}=reviews-wp   # one service only

Exit status: 0 applied (and ready, with --wait); 1 when it failed or --wait timed out.
`,
    )
    .action(async (o: ApplyOptions) => apply(o));
}

// ---- generate ---------------------------------------------------------------------------------

function generateCommand(): Command {
  return new Command('generate')
    .summary('print the waypoint Gateway as YAML, without applying it')
    .description('Prints the Gateway that `meshctl waypoint apply` would apply, for review or for `kubectl apply -f -`. Reads nothing from the cluster.')
    .addOption(new Option('-n, --namespace <namespace>', "the waypoint's namespace").default('default'))
    .addOption(nameOption())
    .addOption(forOption())
    .addHelpText('after', '\nExamples:\n  meshctl waypoint generate -n shop > waypoint.yaml\n  meshctl waypoint generate -n shop --for all | kubectl apply -f -\n')
    .action((o: { namespace: string; name: string; for: TrafficType }) => {
      say(generateYaml({ name: o.name, namespace: o.namespace, trafficType: o.for }));
    });
}

// ---- list -------------------------------------------------------------------------------------

interface ListOptions extends KubeOptions {
  allNamespaces?: boolean;
  output: 'table' | 'json' | 'yaml';
}

function listCommand(): Command {
  const cmd = new Command('list').summary('list waypoints: programmed or not, traffic type, and who uses them');
  kubeOptions(cmd, 'list the waypoints of this namespace (default: the kubeconfig context\'s, else "default")')
    .option('-A, --all-namespaces', 'list the waypoints of every namespace')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table'));
  return cmd
    .description(
      'Lists the Gateways of class mesh-waypoint. Columns: NAMESPACE (with -A), NAME, PROGRAMMED (the Gateway\'s ' +
        'Programmed condition: True once its Deployment is ready), TRAFFIC TYPE (mesh.io/waypoint-for), USED BY (the ' +
        'namespaces, services and in-mesh pods whose traffic goes through it, by their mesh.io/use-waypoint label).',
    )
    .addHelpText('after', '\nExamples:\n  meshctl waypoint list -n shop\n  meshctl waypoint list -A\n  meshctl waypoint list -A -o json | jq \'.[] | select(.programmed != "True")\'\n')
    .action(async (o: ListOptions) => {
      const { kc, namespace } = await connect(o);
      await requireGatewayApi(kc);
      const view = await readWaypointView(kc);
      const gateways = o.allNamespaces ? view.snapshot.gateways : view.snapshot.gateways.filter((g) => g.metadata?.namespace === namespace);
      const rows = listRows(gateways, view.model.waypoints);
      if (o.output !== 'table') {
        say(renderData(rows, o.output));
        return;
      }
      if (rows.length === 0) {
        process.stderr.write(o.allNamespaces ? 'no waypoints found\n' : `no waypoints found in namespace ${namespace}\n`);
        return;
      }
      say(renderList(rows, Boolean(o.allNamespaces)));
    });
}

// ---- status -----------------------------------------------------------------------------------

async function statusFacts(kc: k8s.KubeConfig, namespace: string, name: string): Promise<StatusFacts> {
  const key = `${namespace}/${name}`;
  const view = await readWaypointView(kc);
  const gateway = view.snapshot.gateways.find((g) => g.metadata?.namespace === namespace && g.metadata?.name === name);
  if (!gateway) {
    const others = view.snapshot.gateways.filter((g) => g.metadata?.namespace === namespace && isWaypoint(g)).map((g) => g.metadata?.name);
    const users = view.model.waypoints.get(key)?.users ?? [];
    throw new KubeCommandError(
      'MESH_ERR_WAYPOINT_NOT_FOUND',
      `no waypoint ${key}` +
        (others.length ? ` (waypoints in ${namespace}: ${others.join(', ')})` : ` (namespace ${namespace} has no waypoint; create one with \`meshctl waypoint apply -n ${namespace} --name ${name}\`)`) +
        (users.length ? `; ${users.join(', ')} still name it, so their traffic is refused (fail closed)` : ''),
    );
  }
  const k = await import('@kubernetes/client-node');
  const ownedByGateway = (o: { metadata?: k8s.V1ObjectMeta }) =>
    o.metadata?.labels?.[LABEL_GATEWAY_NAME] === name || (o.metadata?.ownerReferences ?? []).some((r) => r.kind === 'Gateway' && r.name === name);
  const deployments = await kc
    .makeApiClient(k.AppsV1Api)
    .listNamespacedDeployment({ namespace })
    .catch((err: unknown) => {
      throw apiError(`listing Deployments in ${namespace}`, kc, err);
    });
  const dep: DeploymentFacts[] = deployments.items.filter(ownedByGateway).map((d) => ({ name: d.metadata?.name ?? '', replicas: d.spec?.replicas ?? 1, ready: d.status?.readyReplicas ?? 0 }));
  const svc = view.snapshot.services.find((s) => s.metadata?.namespace === namespace && s.metadata?.name === name);
  const slices = view.snapshot.endpointSlices.filter((s) => s.metadata?.namespace === namespace && s.metadata?.labels?.['kubernetes.io/service-name'] === name);
  const endpoints = slices.flatMap((s) => s.endpoints ?? []);
  return {
    gateway,
    deployments: dep,
    service: svc
      ? { name: `${namespace}/${name}`, clusterIP: svc.spec?.clusterIP ?? '', endpoints: endpoints.length, readyEndpoints: endpoints.filter((e) => e.conditions?.ready !== false).length }
      : undefined,
    use: view.model.waypoints.get(key),
    problem: waypointProblem(view.snapshot, namespace, name),
  };
}

function statusCommand(): Command {
  const cmd = new Command('status').summary("show a waypoint's conditions, Deployment, Service and users, and whether their traffic is served");
  kubeOptions(cmd).addOption(nameOption()).addOption(new Option('-o, --output <format>', 'output format').choices(['human', 'json', 'yaml']).default('human'));
  return cmd
    .description(
      "Shows a waypoint: its Gateway's conditions (Accepted, Programmed), its Deployment's and Service's readiness, " +
        'and every namespace, service and in-mesh pod that uses it, with whether their traffic is served or refused ' +
        '(fail closed: while the waypoint is missing, not Programmed or without a ready endpoint, ztunnel refuses ' +
        'their connections rather than bypass it) and why.',
    )
    .addHelpText('after', '\nExamples:\n  meshctl waypoint status -n shop\n  meshctl waypoint status -n shop --name reviews-wp -o json\n')
    .action(async (o: KubeOptions & { name: string; output: 'human' | 'json' | 'yaml' }) => {
      const { kc, namespace } = await connect(o);
      await requireGatewayApi(kc);
      const facts = await statusFacts(kc, namespace, o.name);
      if (o.output === 'human') say(renderStatus(facts));
      else say(renderData({ ...facts, problem: facts.use?.problem ?? facts.problem }, o.output));
    });
}

// ---- delete -----------------------------------------------------------------------------------

interface DeleteOptions extends KubeOptions {
  all?: boolean;
}

async function remove(names: string[], o: DeleteOptions): Promise<void> {
  if (names.length === 0 && !o.all) throw new KubeCommandError('MESH_ERR_WAYPOINT_NOT_FOUND', 'name the waypoints to delete, or pass --all to delete every waypoint in the namespace');
  if (names.length > 0 && o.all) throw new KubeCommandError('MESH_ERR_WAYPOINT_CONFLICT', 'give waypoint names or --all, not both');
  const { kc, namespace } = await connect(o);
  await requireGatewayApi(kc);
  const gateways = await listGateways(kc, namespace);
  let targets: KubeObject[];
  if (o.all) {
    targets = gateways.filter(isWaypoint);
    if (targets.length === 0) {
      say(`no waypoints in namespace ${namespace}`);
      return;
    }
  } else {
    targets = [];
    for (const n of names) {
      const g = gateways.find((x) => x.metadata?.name === n);
      if (!g) throw new KubeCommandError('MESH_ERR_WAYPOINT_NOT_FOUND', `no waypoint ${namespace}/${n} (waypoints in ${namespace}: ${gateways.filter(isWaypoint).map((x) => x.metadata?.name).join(', ') || 'none'})`);
      if (!isWaypoint(g)) throw new KubeCommandError('MESH_ERR_WAYPOINT_CONFLICT', `Gateway ${namespace}/${n} is not a waypoint (its class is not mesh-waypoint): delete it with kubectl if you mean to`);
      targets.push(g);
    }
  }
  // Who still names them, read before they go: after deletion the model can only say "does not exist".
  const view = await readWaypointView(kc);
  const k = await import('@kubernetes/client-node');
  const api = kc.makeApiClient(k.CustomObjectsApi);
  let failed = 0;
  for (const g of targets) {
    const name = g.metadata?.name ?? '';
    const key = `${namespace}/${name}`;
    try {
      // Background: the Deployment, Service and ServiceAccount it owns are garbage-collected after it.
      await api.deleteNamespacedCustomObject({ ...gatewayParams(namespace, name), propagationPolicy: 'Background' });
    } catch (err) {
      if (httpStatus(err) === 404) {
        say(`waypoint ${key} was already gone`);
        continue;
      }
      process.stderr.write(`meshctl: ${apiError(`deleting Gateway ${key}`, kc, err).message}\n`);
      failed++;
      continue;
    }
    say(`waypoint ${key} deleted`);
    const warning = deletionWarning(key, view.model.waypoints.get(key));
    if (warning) process.stderr.write(warning);
  }
  if (failed) process.exitCode = 1;
}

function deleteCommand(): Command {
  const cmd = new Command('delete').summary('delete waypoints; warns which users are now refused').argument('[names...]', 'the waypoints (Gateways) to delete');
  kubeOptions(cmd).option('--all', 'delete every waypoint in the namespace');
  return cmd
    .description(
      'Deletes waypoint Gateways; the Deployment, Service and ServiceAccount they own are garbage-collected. ' +
        'The namespaces, services and pods whose label still names a deleted waypoint are listed: their traffic ' +
        'is refused (fail closed) until the waypoint is back or the label is removed.',
    )
    .addHelpText('after', '\nExamples:\n  meshctl waypoint delete -n shop waypoint\n  meshctl waypoint delete -n shop --all\n')
    .action(async (names: string[], o: DeleteOptions) => remove(names, o));
}

export function waypointCommand(): Command {
  return new Command('waypoint')
    .alias('wp')
    .summary('manage waypoints, the L7 proxies (apply, generate, list, status, delete)')
    .description(
      'Manages waypoints: L7 proxies declared as Gateway API Gateways of class mesh-waypoint with an HBONE listener on ' +
        `port 15008. A namespace, service or pod opts in with the label ${LABEL_USE_WAYPOINT}=<name> ` +
        `(${LABEL_USE_WAYPOINT_NAMESPACE}=<ns> for a waypoint in another namespace); a service's or pod's own label ` +
        "overrides its namespace's. The same commands as istioctl waypoint. Needs the Gateway API CRDs.",
    )
    .addCommand(applyCommand())
    .addCommand(generateCommand())
    .addCommand(listCommand())
    .addCommand(statusCommand())
    .addCommand(deleteCommand())
    .addHelpText(
      'after',
      `
Examples:
  meshctl waypoint apply -n shop --enroll-namespace --wait
  meshctl waypoint list -A
  meshctl waypoint status -n shop
  meshctl waypoint delete -n shop waypoint
`,
    );
}
