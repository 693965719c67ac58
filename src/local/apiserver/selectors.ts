// Label and field selectors, as k8s.io/apimachinery/pkg/labels and pkg/fields parse them.
import { BadRequestError } from './errors.ts';
import type { ResourceDef } from './resources.ts';
import { getPath, type KubeObject } from './types.ts';

type LabelReq =
  | { op: 'eq' | 'neq'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'notexists'; key: string };

export type Matcher = (obj: KubeObject) => boolean;

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`; an empty string matches everything. */
export function parseLabelSelector(input: string): Matcher {
  const reqs: LabelReq[] = [];
  const s = input.trim();
  let i = 0;
  const fail = (why: string): never => {
    throw new BadRequestError(`unable to parse requirement: invalid label selector "${input}": ${why}`);
  };
  const skipWs = () => {
    while (s[i] === ' ') i++;
  };
  const readKey = (): string => {
    skipWs();
    const start = i;
    while (i < s.length && /[A-Za-z0-9._/-]/.test(s[i]!)) i++;
    const key = s.slice(start, i);
    if (!key) fail(`expected a label key at position ${start}`);
    return key;
  };
  const readValue = (): string => {
    skipWs();
    const start = i;
    while (i < s.length && /[A-Za-z0-9._-]/.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  while (i < s.length) {
    skipWs();
    if (s[i] === '!') {
      i++;
      reqs.push({ op: 'notexists', key: readKey() });
    } else {
      const key = readKey();
      skipWs();
      if (s.startsWith('==', i)) {
        i += 2;
        reqs.push({ op: 'eq', key, value: readValue() });
      } else if (s.startsWith('!=', i)) {
        i += 2;
        reqs.push({ op: 'neq', key, value: readValue() });
      } else if (s[i] === '=') {
        i += 1;
        reqs.push({ op: 'eq', key, value: readValue() });
      } else if (/^(in|notin)\s*\(/.test(s.slice(i))) {
        const op = s.startsWith('notin', i) ? 'notin' : 'in';
        i = s.indexOf('(', i) + 1;
        const end = s.indexOf(')', i);
        if (end < 0) fail('missing ")"');
        const values = s
          .slice(i, end)
          .split(',')
          .map((v) => v.trim())
          .filter((v) => v !== '');
        i = end + 1;
        reqs.push({ op, key, values });
      } else if (i >= s.length || s[i] === ',') {
        reqs.push({ op: 'exists', key });
      } else {
        fail(`unexpected "${s[i]}" after key "${key}"`);
      }
    }
    skipWs();
    if (i < s.length) {
      if (s[i] !== ',') fail(`expected "," at position ${i}`);
      i++;
    }
  }
  return (obj) => {
    const labels = obj.metadata.labels ?? {};
    return reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      const v = labels[r.key];
      switch (r.op) {
        case 'eq':
          return has && v === r.value;
        case 'neq':
          return !has || v !== r.value;
        case 'in':
          return has && r.values.includes(v!);
        case 'notin':
          return !has || !r.values.includes(v!);
        case 'exists':
          return has;
        case 'notexists':
          return !has;
      }
    });
  };
}

/** Parses `metadata.name=x,spec.nodeName!=y`; only the field labels the kind supports. */
export function parseFieldSelector(input: string, d: ResourceDef): Matcher {
  const reqs: { path: string; value: string; negate: boolean }[] = [];
  for (const part of input.split(',').map((p) => p.trim()).filter(Boolean)) {
    const m = /^([A-Za-z0-9._-]+)\s*(==|!=|=)\s*(.*)$/.exec(part);
    if (!m) throw new BadRequestError(`invalid field selector "${input}": "${part}" is not key=value, key==value or key!=value`);
    const [, path, op, value] = m;
    if (path !== 'metadata.name' && path !== 'metadata.namespace' && !d.fieldSelectors.includes(path!)) {
      throw new BadRequestError(`field label not supported: ${path} (supported for ${d.plural}: ${['metadata.name', 'metadata.namespace', ...d.fieldSelectors].join(', ')})`);
    }
    reqs.push({ path: path!, value: value!, negate: op === '!=' });
  }
  return (obj) =>
    reqs.every((r) => {
      const raw = getPath(obj, r.path);
      const v = raw === undefined || raw === null ? '' : String(raw);
      return r.negate ? v !== r.value : v === r.value;
    });
}
