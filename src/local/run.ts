// Running the host's networking tools (ip, sysctl, mount) for the local cluster.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { CommandError } from './errors.ts';

const execFileAsync = promisify(execFile);

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The absolute path of a system tool. npm scripts put node_modules/.bin first on PATH, and npm
 * packages ship binaries with system names (an `nft` from @vercel/nft is installed here), so the
 * host's networking tools are never looked up through PATH.
 */
export function systemTool(name: string, debianPackage = name): string {
  for (const dir of SYSTEM_DIRS) if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  throw new CommandError(name, `${name} is not installed (Debian package ${debianPackage}; \`make setup\` installs it)`, 'ENOENT', undefined);
}

/**
 * Runs `cmd args…`, optionally feeding `input` on stdin, and resolves with its stdout.
 * Rejects with a CommandError naming the command line and its stderr.
 */
export async function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  const pending = execFileAsync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  // A command that exits without reading stdin makes our write fail with EPIPE; its exit status
  // is what tells us whether it worked.
  pending.child.stdin?.on('error', () => {});
  if (input === undefined) pending.child.stdin?.end();
  else pending.child.stdin?.end(input);
  try {
    return (await pending).stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; code?: number | string };
    let stderr = e.stderr ?? '';
    // `ip -batch -` reports "Command failed -:N"; name the line so the error is readable alone.
    const failedLine = /Command failed -:(\d+)/.exec(stderr)?.[1];
    if (input !== undefined && failedLine) {
      stderr += ` [line ${failedLine}: ${input.split('\n')[Number(failedLine) - 1] ?? '?'}]`;
    }
    if (!stderr && typeof e.code === 'string') stderr = e.message; // ENOENT etc.: it never ran
    throw new CommandError([cmd, ...args].map(quote).join(' '), stderr, e.code, err);
  }
}

/** Runs one `ip -batch -` over `lines` (in network namespace `netns` when given). */
export async function ipBatch(lines: readonly string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  await run('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], `${lines.join('\n')}\n`);
}
