// `meshctl version`: what is running — this package, Node, and the libbpf the addon was built with.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { native } from '../../datapath/index.ts';

export function versionCommand(): Command {
  return new Command('version')
    .description('print the versions of meshctl, Node.js and libbpf')
    .addHelpText('after', '\nExamples:\n  meshctl version   # include this in bug reports\n')
    .action(() => {
      process.stdout.write(
        [
          `meshctl  ${packageVersion()}`,
          `node     ${process.version}`,
          `libbpf   ${libbpfVersion()}`,
          '',
        ].join('\n'),
      );
    });
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function libbpfVersion(): string {
  try {
    return native().libbpfVersion();
  } catch {
    return 'unknown (the native addon is not built: run `make`)';
  }
}
