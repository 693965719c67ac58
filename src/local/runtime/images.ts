// "Pulling" an image on the local cluster: looking it up in the host's local store. Nothing is
// fetched from a registry. A missing image leaves the container waiting, as kubelet does, with
// ErrImagePull and then ImagePullBackOff, and an Event that says how to load it; the kubelet
// looks again with a capped backoff and starts the container once the image is there.
import type * as k8s from '@kubernetes/client-node';
import type { Container, ContainerEvent } from './containers.ts';
import { imageExists } from './oci.ts';

const RETRY_START_MS = 2000;
const RETRY_MAX_MS = 30_000;

function howToLoad(image: string): string {
  return `image "${image}" is not in this host's local image store and the local cluster pulls from no registry: ` +
    `build it with \`podman build -t ${image} .\` or load it with \`meshctl dev image load FILE.tar\` (or \`podman load -i FILE.tar\`)`;
}

/**
 * Resolves true when the image is present now (start the container). Otherwise marks the container
 * ErrImagePull → ImagePullBackOff, records the Events, keeps looking, and calls `container.start()`
 * itself once the image appears (unless `stopped()`); resolves false.
 */
export async function pullLocal(c: k8s.V1Container, container: Container, record: ContainerEvent, stopped: () => boolean, onChange: () => void): Promise<boolean> {
  const image = c.image ?? '';
  if (c.imagePullPolicy === 'Always') {
    record('Warning', 'PullPolicyIgnored', `imagePullPolicy Always: the local cluster has no registry; image "${image}" is taken from the local store`);
  }
  if (image && (await imageExists(image))) return true;
  const why = image ? howToLoad(image) : 'the container has no image and no command: set spec.containers[].image (or a command, to run it on this host)';
  container.fail('ErrImagePull', why);
  record('Warning', 'Failed', `Failed to pull image "${image}": ${why}`);
  record('Warning', 'Failed', 'Error: ErrImagePull');
  onChange();
  let delay = RETRY_START_MS;
  const retry = async () => {
    if (stopped()) return;
    if (image && (await imageExists(image))) {
      record('Normal', 'Pulled', `Container image "${image}" already present on machine`);
      container.start();
      onChange();
      return;
    }
    container.fail('ImagePullBackOff', `Back-off pulling image "${image}": ${why}`);
    record('Normal', 'BackOff', `Back-off pulling image "${image}"`);
    record('Warning', 'Failed', 'Error: ImagePullBackOff');
    onChange();
    delay = Math.min(delay * 2, RETRY_MAX_MS);
    container.retryTimer = setTimeout(() => void retry(), delay);
  };
  container.retryTimer = setTimeout(() => void retry(), 1000);
  return false;
}
