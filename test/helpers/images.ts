// A minimal container image for tests, as a user would build one: Debian's busybox-static in a
// `FROM scratch` image (sh, httpd, wget, nc, …), built by podman with no RUN step (so no runtime).
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const BUSYBOX_IMAGE = 'localhost/busybox-test';

const TOOLS = ['sh', 'httpd', 'wget', 'nc', 'cat', 'sleep', 'echo', 'ls', 'id', 'grep', 'true', 'false', 'touch', 'rm', 'test', 'date', 'kill'];

/** Builds BUSYBOX_IMAGE (or `tag`) in the host's local store from a context made under `dir`. */
export function buildBusyboxImage(dir: string, tag = BUSYBOX_IMAGE): void {
  const ctx = join(dir, 'image');
  mkdirSync(join(ctx, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(ctx, 'bin', 'busybox'));
  for (const tool of TOOLS) symlinkSync('busybox', join(ctx, 'bin', tool));
  writeFileSync(join(ctx, 'Containerfile'), 'FROM scratch\nCOPY bin /bin\n');
  execFileSync('podman', ['--runtime', 'runc', '--cgroup-manager', 'cgroupfs', 'build', '-q', '-t', tag, ctx], { stdio: 'ignore' });
}
