// The service map's page: draws the controller's map (/api/events, live) with cytoscape and its
// dagre (layered) layout, lists every edge in a table (so the map is readable without the canvas),
// and shows the recent flows of what is clicked, with meshctl flows' filters (/api/flows).
'use strict';

cytoscape.use(cytoscapeDagre);

const $ = (id) => document.getElementById(id);
const state = { snapshot: null, selected: null, shapeKey: '', namespace: '' };

const cy = cytoscape({
  container: $('map'),
  wheelSensitivity: 0.3,
  style: [
    { selector: 'node', style: { label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4, width: 34, height: 34, 'background-color': '#4a78b5', 'border-width': 2, 'border-color': '#fff' } },
    { selector: 'node.service', style: { shape: 'round-triangle', 'background-color': '#6a9fd8' } },
    { selector: 'node.external', style: { shape: 'diamond', 'background-color': '#8a94a0' } },
    { selector: 'node.outside', style: { 'background-color': '#b8c0c8' } },
    { selector: 'node.waypointed', style: { 'border-color': '#6a3d9a', 'border-width': 4 } },
    { selector: 'node:selected', style: { 'border-color': '#f0a30a', 'border-width': 5 } },
    { selector: 'edge', style: { width: 2, 'curve-style': 'bezier', 'target-arrow-shape': 'triangle', 'line-color': '#2e8b57', 'target-arrow-color': '#2e8b57', label: 'data(label)', 'font-size': 9, 'text-rotation': 'autorotate', 'text-background-color': '#fff', 'text-background-opacity': 0.8 } },
    { selector: 'edge.plaintext', style: { 'line-color': '#8a94a0', 'target-arrow-color': '#8a94a0', 'line-style': 'dashed' } },
    { selector: 'edge.mixed', style: { 'line-color': '#c49a00', 'target-arrow-color': '#c49a00' } },
    { selector: 'edge.waypoint', style: { 'line-style': 'dotted', 'line-color': '#6a3d9a', 'target-arrow-color': '#6a3d9a' } },
    { selector: 'edge.errors', style: { 'line-color': '#e07b00', 'target-arrow-color': '#e07b00' } },
    // Denials stand out: thick red, whatever else the edge is.
    { selector: 'edge.denied', style: { width: 6, 'line-color': '#d62728', 'target-arrow-color': '#d62728', 'line-style': 'solid', color: '#d62728', 'font-weight': 'bold' } },
    { selector: 'edge.idle', style: { opacity: 0.35 } },
    { selector: 'edge:selected', style: { 'overlay-color': '#f0a30a', 'overlay-opacity': 0.25 } },
  ],
});
window.cy = cy;

function pct(x) {
  return `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 0)}%`;
}

function edgeLabel(e) {
  const parts = [];
  if (e.flows > 0) {
    parts.push(`${e.rate.toFixed(e.rate < 10 ? 2 : 0)} ${e.unit}`);
    if (e.errorRate > 0) parts.push(`err ${pct(e.errorRate)}`);
    if (e.p99Ms !== null) parts.push(`p99 ${e.p99Ms < 10 ? e.p99Ms.toFixed(1) : Math.round(e.p99Ms)} ms`);
  } else parts.push('idle');
  parts.push(e.security === 'mtls' ? 'mTLS' : e.security);
  if (e.deniedNow) parts.push(`DENIED ${e.denied}`);
  if (e.waypoint) parts.push(`via ${e.waypoint}`);
  return parts.join(' · ');
}

function edgeClasses(e) {
  const c = ['edge', e.security];
  if (e.deniedNow) c.push('denied');
  if (e.errorRate > 0) c.push('errors');
  if (e.waypoint) c.push('waypoint');
  if (e.flows === 0) c.push('idle');
  return c.join(' ');
}

function visible(snapshot) {
  const ns = state.namespace;
  const nodes = snapshot.nodes.filter((n) => !ns || n.namespace === ns || n.kind === 'external');
  const ids = new Set(nodes.map((n) => n.id));
  const edges = snapshot.edges.filter((e) => ids.has(e.source) && ids.has(e.target));
  // In a namespace view, addresses outside it appear only when something there talks to them.
  const touched = new Set(edges.flatMap((e) => [e.source, e.target]));
  return { nodes: nodes.filter((n) => n.kind !== 'external' || touched.has(n.id)), edges };
}

function draw(snapshot) {
  state.snapshot = snapshot;
  const namespaces = [...new Set(snapshot.nodes.map((n) => n.namespace).filter(Boolean))].sort();
  const select = $('namespace');
  for (const ns of namespaces) {
    if (![...select.options].some((o) => o.value === ns)) select.add(new window.Option(ns, ns));
  }
  const { nodes, edges } = visible(snapshot);
  const shapeKey = [...nodes.map((n) => n.id), ...edges.map((e) => e.id)].sort().join('|');
  cy.batch(() => {
    const keep = new Set(shapeKey.split('|'));
    cy.elements().forEach((el) => {
      if (!keep.has(el.id())) el.remove();
    });
    for (const n of nodes) {
      const data = { id: n.id, label: n.kind === 'service' ? `${n.name} (svc)` : n.name, node: n };
      const classes = [n.kind, n.inMesh ? 'meshed' : 'outside', n.waypoint ? 'waypointed' : ''].join(' ');
      const el = cy.getElementById(n.id);
      if (el.nonempty()) el.data(data).classes(classes);
      else cy.add({ group: 'nodes', data, classes });
    }
    for (const e of edges) {
      const data = { id: e.id, source: e.source, target: e.target, label: edgeLabel(e), edge: e };
      const el = cy.getElementById(e.id);
      if (el.nonempty()) el.data(data).classes(edgeClasses(e));
      else cy.add({ group: 'edges', data, classes: edgeClasses(e) });
    }
  });
  if (shapeKey !== state.shapeKey) {
    state.shapeKey = shapeKey;
    cy.layout({ name: 'dagre', rankDir: 'LR', nodeSep: 40, rankSep: 140, animate: false, fit: true, padding: 30 }).run();
  }
  drawEdgeTable(edges, snapshot);
  $('status').textContent = `live · ${nodes.length} nodes · ${edges.length} edges · ${snapshot.flowsSeen} flows seen · rates over the last ${snapshot.windowMs / 1000} s`;
  $('status').classList.remove('down');
}

function nodeName(snapshot, id) {
  const n = snapshot.nodes.find((x) => x.id === id);
  if (!n) return id;
  return n.kind === 'external' ? n.name : `${n.namespace}/${n.name}${n.kind === 'service' ? ' (svc)' : ''}`;
}

function drawEdgeTable(edges, snapshot) {
  const body = $('edges');
  body.replaceChildren(
    ...edges.map((e) => {
      const tr = document.createElement('tr');
      tr.className = edgeClasses(e);
      tr.dataset.edge = e.id;
      tr.dataset.source = nodeName(snapshot, e.source);
      tr.dataset.target = nodeName(snapshot, e.target);
      tr.dataset.security = e.security;
      tr.dataset.denied = String(e.deniedNow);
      tr.dataset.waypoint = e.waypoint;
      const cells = [tr.dataset.source, tr.dataset.target, e.flows ? `${e.rate.toFixed(2)} ${e.unit}` : 'idle', pct(e.errorRate), e.p99Ms === null ? '–' : `${e.p99Ms.toFixed(1)} ms`, e.security, e.deniedNow ? `DENIED (${e.denied})` : e.lastDeniedMs ? `earlier, ${new Date(e.lastDeniedMs).toISOString().slice(11, 19)}` : '', e.waypoint || ''];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.append(td);
      }
      tr.addEventListener('click', () => select({ kind: 'edge', title: `${tr.dataset.source} → ${tr.dataset.target}`, filter: e.filter }));
      return tr;
    }),
  );
}

/** "--verdict DROPPED --since=5m -n shop" → [[verdict, DROPPED], [since, 5m], [namespace, shop]]. */
function parseFlags(text) {
  const short = { n: 'namespace' };
  const out = [];
  const words = text.trim().split(/\s+/).filter(Boolean);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(w);
    if (!m) throw new Error(`"${w}" is not a flag: write filters as meshctl flows takes them (--verdict DROPPED)`);
    const name = short[m[1]] || m[1];
    let value = m[2];
    if (value === undefined) {
      value = words[i + 1];
      i++;
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    out.push([name, value]);
  }
  return out;
}

async function showFlows() {
  const sel = state.selected;
  $('error').textContent = '';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(sel ? sel.filter : {})) params.append(k, v);
  try {
    for (const [k, v] of parseFlags($('filter').value)) params.append(k, v);
  } catch (e) {
    $('error').textContent = e.message;
    return;
  }
  if (!params.has('last') && !params.has('first')) params.set('last', '50');
  $('query').textContent = `meshctl flows ${[...params].map(([k, v]) => `--${k} ${v}`).join(' ')}`;
  const res = await fetch(`/api/flows?${params}`);
  const body = await res.json();
  if (!res.ok) {
    $('error').textContent = body.error;
    return;
  }
  const notes = body.notes.map((n) => (n.nodeStatus ? `node ${n.nodeStatus.state}: ${n.nodeStatus.message}` : `lost events: ${n.lostEvents.numEventsLost} ${n.lostEvents.source}`));
  $('error').textContent = notes.join('; ');
  const rows = body.flows.reverse().map((f) => {
    const tr = document.createElement('tr');
    tr.className = `flow ${f.verdict}`;
    const end = (ep, ip, port) => `${ep.podName ? `${ep.namespace}/${ep.podName}` : ip}:${port}`;
    const summary = [f.summary || f.protocol, f.destinationService ? `via ${f.destinationService}` : '', f.dropReasonDesc, f.reporter].filter(Boolean).join(', ');
    for (const c of [new Date(f.timeUnixNano / 1e6).toISOString().slice(11, 23), end(f.source, f.ip.source, f.tcp.sourcePort), end(f.destination, f.ip.destination, f.tcp.destinationPort), f.verdict, summary]) {
      const td = document.createElement('td');
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  });
  $('flows').tBodies[0].replaceChildren(...rows);
}

function select(sel) {
  state.selected = sel;
  $('selected').textContent = sel.title;
  showFlows().catch((e) => ($('error').textContent = e.message));
}

cy.on('tap', 'node', (ev) => {
  const n = ev.target.data('node');
  select({ kind: 'node', title: nodeName(state.snapshot, n.id), filter: n.filter });
});
cy.on('tap', 'edge', (ev) => {
  const e = ev.target.data('edge');
  select({ kind: 'edge', title: `${nodeName(state.snapshot, e.source)} → ${nodeName(state.snapshot, e.target)}`, filter: e.filter });
});
$('filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  showFlows().catch((e) => ($('error').textContent = e.message));
});
$('namespace').addEventListener('change', () => {
  state.namespace = $('namespace').value;
  state.shapeKey = '';
  if (state.snapshot) draw(state.snapshot);
});
const initialNs = new URLSearchParams(window.location.search).get('namespace');
if (initialNs) {
  state.namespace = initialNs;
  $('namespace').add(new window.Option(initialNs, initialNs, true, true));
}

const events = new EventSource('/api/events');
events.addEventListener('graph', (ev) => draw(JSON.parse(ev.data)));
events.onerror = () => {
  $('status').textContent = 'disconnected from the controller — retrying';
  $('status').classList.add('down');
};
