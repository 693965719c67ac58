// How the local kubelet reports a container that never ran: the runtime's own failure (podman
// exits 125-127 with its `Error: …` line last, e.g. runc's "error setting rlimits") becomes the
// container's terminated reason StartError with that message and a Warning Event, as kubelet
// reports a CRI start failure, not an exit the app made; an app's own exit 126 stays an Error.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { Container, type ContainerState } from '../../src/local/runtime/containers.ts';
import { runtimeError } from '../../src/local/runtime/oci.ts';

const RUNC = 'Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied';

async function runOnce(script: string): Promise<{ st: ContainerState; events: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'mesh-container-errors-'));
  const events: string[] = [];
  try {
    return await new Promise((resolve) => {
      const c: Container = new Container({
        name: 'install-cni',
        command: ['/bin/sh', '-c', script],
        env: process.env,
        logPath: join(dir, 'log'),
        policy: 'Never',
        launch: (cmd, args, o) => spawn(cmd, args, { env: o.env, stdio: o.stdio }),
        onChange: () => {
          if ('terminated' in c.st.state) resolve({ st: c.st, events });
        },
        onEvent: (type, reason, message) => events.push(`${type} ${reason}: ${message}`),
        runtimeError,
      });
      c.start();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a runtime's start failure is the container's StartError with runc's message, and a Warning Event", async (t) => {
  const { st, events } = await runOnce(`echo '${RUNC}' >&2; exit 126`);
  t.true('terminated' in st.state);
  if (!('terminated' in st.state)) return;
  t.is(st.state.terminated.reason, 'StartError');
  t.regex(st.state.terminated.message ?? '', /error setting rlimits/);
  t.true(events.some((e) => e.startsWith('Warning Failed: Error: runc: runc create failed')), events.join('\n'));
});

test("the app's own exit 126 with ordinary output stays an Error with no runtime message", async (t) => {
  const { st, events } = await runOnce(`echo 'permission denied: /app/run.sh'; exit 126`);
  if (!('terminated' in st.state)) return t.fail('not terminated');
  t.is(st.state.terminated.reason, 'Error');
  t.is(st.state.terminated.message, undefined);
  t.false(events.some((e) => e.includes('Failed')));
});

test('runtimeError reads podman\'s exit codes and its Error line only', (t) => {
  t.is(runtimeError(125, 'Error: short-name resolution enforced'), 'short-name resolution enforced');
  t.is(runtimeError(1, 'Error: the app failed'), undefined);
  t.is(runtimeError(127, 'sh: foo: not found'), undefined);
});
