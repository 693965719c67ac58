// Human output shared by meshctl commands. Colour only on a terminal and never with NO_COLOR:
// util.styleText checks the stream it is given.
import { styleText } from 'node:util';
import type { CheckResult, CheckStatus } from './checks.ts';

const MARKS: Record<CheckStatus, { mark: string; color: 'green' | 'yellow' | 'red' }> = {
  ok: { mark: '✔', color: 'green' },
  warn: { mark: '!', color: 'yellow' },
  fail: { mark: '✖', color: 'red' },
};

/** One line per check ("✔ name  detail"), the fix indented under it, then a summary line. */
export function renderChecks(
  results: readonly CheckResult[],
  stream: NodeJS.WriteStream = process.stdout,
  subject: 'host' | 'mesh' | 'cluster' = 'host',
): string {
  const width = Math.max(...results.map((r) => r.name.length)) + 2;
  const lines: string[] = [];
  for (const r of results) {
    const { mark, color } = MARKS[r.status];
    lines.push(`${styleText(color, mark, { stream })} ${r.name.padEnd(width)}${r.detail}`);
    if (r.fix) lines.push(`  ${' '.repeat(width)}${styleText('bold', '→', { stream })} ${r.fix}`);
  }
  const failed = results.filter((r) => r.status === 'fail').length;
  const warned = results.filter((r) => r.status === 'warn').length;
  lines.push('');
  const [bad, good] =
    subject === 'host'
      ? ['this host cannot run the mesh datapath yet', 'the mesh datapath can run here']
      : subject === 'cluster'
        ? ['fix these before installing the mesh', 'the cluster is ready for the mesh']
        : ['the mesh is not healthy', 'the mesh is healthy'];
  if (failed > 0) {
    lines.push(`${plural(failed, 'check')} failed, ${plural(warned, 'warning')}: ${bad}`);
  } else if (warned > 0) {
    lines.push(`no check failed, ${plural(warned, 'warning')}: ${good}`);
  } else {
    lines.push(`all checks passed: ${good}`);
  }
  return `${lines.join('\n')}\n`;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
