// `meshctl dev image load`: puts image archives into this host's local image store, where the
// local cluster's kubelet finds them (it pulls from no registry) — what `kind load` is for kind.
// A thin convenience over `podman load`; `podman build -t localhost/app .` works as well.
import { Command } from 'commander';
import { loadImage } from '../../local/runtime/oci.ts';

export function devImageCommand(): Command {
  const image = new Command('image').description('manage the images the local cluster can run (the host\'s local image store)');
  image
    .command('load')
    .description('load image archives (docker save / podman save / oci-archive) into the local store')
    .argument('<file...>', 'image archive(s)')
    .addHelpText('after', '\nExamples:\n  docker save myapp:1 -o myapp.tar && sudo meshctl dev image load myapp.tar\n  sudo meshctl dev image load ztunnel.tar agent.tar\n' +
      '\nOr build straight into the store (a Containerfile with RUN steps needs runc and ulimits within this host\'s limits):\n' +
      '  CONTAINERS_CONF=src/local/runtime/containers.conf podman build -t localhost/app .\n')
    .action(async (files: string[]) => {
      for (const file of files) {
        for (const name of await loadImage(file)) console.log(`loaded ${name}`);
      }
    });
  return image;
}
