// meshctl's composition root: the program, its commands, and how errors become exit codes.
// bin/meshctl runs this file with Node 24, which strips the TypeScript types.
import { Command, CommanderError } from 'commander';
import { analyzeCommand } from './commands/analyze.ts';
import { checkCommand } from './commands/check.ts';
import { completionCommand } from './commands/completion.ts';
import { dashboardCommand } from './commands/dashboard.ts';
import { devCommand } from './commands/dev.ts';
import { flowsCommand } from './commands/flows.ts';
import { statusCommand } from './commands/status.ts';
import { versionCommand } from './commands/version.ts';
import { waypointCommand } from './commands/waypoint.ts';
import { ztunnelConfigCommand } from './commands/ztunnel-config.ts';

// Exit codes: 0 success, 1 the command ran and found a problem (or failed), 2 the command line
// was wrong — the convention of grep, diff and curl, so scripts can tell a typo from a verdict.
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

// Commander's codes for a command line it could not accept (lib/command.js).
const USAGE_ERRORS = new Set([
  'commander.unknownCommand',
  'commander.unknownOption',
  'commander.excessArguments',
  'commander.missingArgument',
  'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.invalidArgument',
  'commander.conflictingOption',
]);

function exitCodeFor(err: CommanderError): number {
  // 'commander.help' is both `meshctl help check` (exit code 0) and `meshctl` with no command
  // (help on stderr, exit code 1): the latter is a usage error.
  if (err.code === 'commander.help') return err.exitCode === 0 ? 0 : EXIT_USAGE;
  return USAGE_ERRORS.has(err.code) ? EXIT_USAGE : err.exitCode;
}

/** The whole command tree. A new command is one factory in commands/ and one line here. */
export function createProgram(): Command {
  const program = new Command('meshctl')
    .description('Operate Mesh, the sidecarless eBPF service mesh')
    .addCommand(analyzeCommand())
    .addCommand(checkCommand())
    .addCommand(dashboardCommand())
    .addCommand(devCommand())
    .addCommand(flowsCommand())
    .addCommand(statusCommand())
    .addCommand(versionCommand())
    .addCommand(waypointCommand())
    .addCommand(ztunnelConfigCommand())
    .addCommand(completionCommand());
  configure(program);
  return program;
}

// addCommand() does not copy settings to the subcommand, so apply them to the whole tree.
function configure(cmd: Command): void {
  cmd.exitOverride().showHelpAfterError(`(run \`${commandPath(cmd)} --help\` for usage)`);
  for (const sub of cmd.commands) configure(sub);
}

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Runs meshctl with `argv` (as process.argv) and sets process.exitCode. */
export async function main(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await createProgram().parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed the message (or the help).
      process.exitCode = exitCodeFor(err);
      return;
    }
    process.stderr.write(`meshctl: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}

if (import.meta.main) await main();
