// Kubernetes label selectors, as `hubble observe -l` takes them (k8s.io/apimachinery
// pkg/labels.Parse): comma-separated requirements, all of which must hold —
//   key  !key  key=value  key==value  key!=value  key in (a,b)  key notin (a,b)
// Hubble's labels carry a source prefix ("k8s:app=web"); ours are the pod's own, so a "k8s:"
// prefix on a key is accepted and dropped, and "any:" likewise.

export class FlowFilterError extends Error {
  readonly code = 'MESH_ERR_FLOW_FILTER';
  override name = 'FlowFilterError';
}

type Requirement =
  | { key: string; op: 'exists' | 'absent' }
  | { key: string; op: 'in' | 'notin'; values: string[] };

export type Selector = readonly Requirement[];

const KEY = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/;
const VALUE = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?)?$/;

function key(raw: string, text: string): string {
  const k = raw.trim().replace(/^(k8s|any):/, '');
  if (!KEY.test(k)) throw new FlowFilterError(`label selector "${text}": "${raw.trim()}" is not a label key (e.g. app, app.kubernetes.io/name)`);
  return k;
}

function value(raw: string, text: string): string {
  const v = raw.trim();
  if (!VALUE.test(v) || v.length > 63) throw new FlowFilterError(`label selector "${text}": "${v}" is not a label value (up to 63 letters, digits, '-', '_' or '.')`);
  return v;
}

/** Splits at commas outside parentheses. */
function parts(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

export function parseSelector(text: string): Selector {
  if (text.trim() === '') throw new FlowFilterError('an empty label selector matches every flow; give one such as app=web');
  return parts(text).map((p): Requirement => {
    const s = p.trim();
    let m = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(s);
    if (m) {
      const values = m[3]!.split(',').map((v) => value(v, text));
      return { key: key(m[1]!, text), op: m[2] as 'in' | 'notin', values };
    }
    m = /^([^=!]+)(!=|==|=)(.*)$/.exec(s);
    if (m) return { key: key(m[1]!, text), op: m[2] === '!=' ? 'notin' : 'in', values: [value(m[3]!, text)] };
    if (s.startsWith('!')) return { key: key(s.slice(1), text), op: 'absent' };
    return { key: key(s, text), op: 'exists' };
  });
}

/** `labels` as "key=value" strings. */
export function selectorMatches(sel: Selector, labels: readonly string[]): boolean {
  const map = new Map<string, string>();
  for (const l of labels) {
    const i = l.indexOf('=');
    map.set((i < 0 ? l : l.slice(0, i)).replace(/^k8s:/, ''), i < 0 ? '' : l.slice(i + 1));
  }
  return sel.every((r) => {
    const v = map.get(r.key);
    switch (r.op) {
      case 'exists':
        return v !== undefined;
      case 'absent':
        return v === undefined;
      case 'in':
        return v !== undefined && r.values.includes(v);
      case 'notin':
        // Kubernetes: "key!=v" and "key notin (…)" also hold when the key is absent.
        return v === undefined || !r.values.includes(v);
    }
    return false;
  });
}
