// `meshctl completion bash|zsh|fish`: a shell completion script generated from the live command
// tree (the program this command is part of), so a new command, option or choice completes
// without anyone editing a script.
import { Argument, Command, type Option } from 'commander';

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

// ---- the tree, as completion needs it ---------------------------------------------------------

interface CompletionOption {
  /** "-o", "--output". */
  flags: string[];
  description: string;
  takesValue: boolean;
  /** Fixed values (Option.choices), else how to complete the value. */
  values: { choices: string[] } | { kind: 'dir' | 'file' | 'none' };
}

interface CompletionNode {
  /** Canonical names from the root, e.g. "meshctl ztunnel-config workloads". */
  path: string;
  name: string;
  aliases: string[];
  description: string;
  children: CompletionNode[];
  options: CompletionOption[];
  /** Choices of the positional arguments (e.g. completion's shells, help's commands). */
  argChoices: string[];
}

function optionOf(o: Option): CompletionOption {
  const flags = [o.short, o.long].filter((f): f is string => typeof f === 'string');
  const takesValue = o.required || o.optional;
  // The value's name in the flags ("--state-dir <dir>") says what kind of word it is.
  const arg = /[<[]([^>\]]+)[>\]]/.exec(o.flags)?.[1] ?? '';
  const kind = /dir/i.test(arg) ? 'dir' : /file|path/i.test(arg) ? 'file' : 'none';
  return { flags, description: o.description, takesValue, values: o.argChoices ? { choices: [...o.argChoices] } : { kind } };
}

function nodeOf(cmd: Command, parentPath: string | undefined, siblings: readonly Command[]): CompletionNode {
  const help = cmd.createHelp();
  const path = parentPath === undefined ? cmd.name() : `${parentPath} ${cmd.name()}`;
  const subs = help.visibleCommands(cmd);
  // Commander's implicit `help [command]` takes a sibling command's name.
  const argChoices =
    cmd.name() === 'help' && parentPath !== undefined
      ? siblings.filter((s) => s.name() !== 'help').map((s) => s.name())
      : cmd.registeredArguments.flatMap((a: Argument) => a.argChoices ?? []);
  return {
    path,
    name: cmd.name(),
    aliases: cmd.aliases(),
    description: cmd.summary() || help.commandDescription(cmd).split('\n')[0]!,
    children: subs.map((s) => nodeOf(s, path, subs)),
    options: help.visibleOptions(cmd).map(optionOf),
    argChoices,
  };
}

function walk(n: CompletionNode): CompletionNode[] {
  return [n, ...n.children.flatMap(walk)];
}

// ---- shell quoting ----------------------------------------------------------------------------

/** A single-quoted word for sh, bash, zsh. */
function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A single-quoted word for fish, which escapes \ and ' inside single quotes. */
function fq(s: string): string {
  return `'${s.replace(/[\\']/g, (c) => `\\${c}`)}'`;
}

function fnName(root: CompletionNode): string {
  return `_${root.name.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** Functions shared by bash and zsh: canonical subcommand for "path|word", value options, and the
 * walk over the words before the cursor. */
function posixHelpers(root: CompletionNode, fn: string): string[] {
  const nodes = walk(root);
  const lines: string[] = [
    `# ${fn}_walk WORD...: the words before the cursor. Follows subcommand names into the caller's`,
    '# $cmd and skips options and their values; $skip is left 1 when the last word wants a value.',
    `${fn}_walk() {`,
    '  local w sub',
    '  for w in "$@"; do',
    '    if ((skip)); then skip=0; continue; fi',
    '    if [[ $w == -* ]]; then',
    `      [[ $w != *=* ]] && ${fn}_takes_value "$cmd" "$w" && skip=1`,
    `    elif sub=$(${fn}_canonical "$cmd" "$w"); then`,
    '      cmd="$cmd $sub"',
    '    fi',
    '  done',
    '}',
    '',
  ];
  lines.push(`# ${fn}_canonical PATH WORD: prints the canonical name of subcommand WORD (or alias) under PATH.`);
  lines.push(`${fn}_canonical() {`, '  case "$1|$2" in');
  for (const n of nodes) {
    for (const c of n.children) lines.push(`    ${[c.name, ...c.aliases].map((a) => sq(`${n.path}|${a}`)).join('|')}) echo ${sq(c.name)} ;;`);
  }
  lines.push('    *) return 1 ;;', '  esac', '}', '');
  lines.push(`# ${fn}_takes_value PATH OPTION: whether OPTION of the command at PATH takes a value.`);
  lines.push(`${fn}_takes_value() {`, '  case "$1|$2" in');
  for (const n of nodes) {
    const valued = n.options.filter((o) => o.takesValue).flatMap((o) => o.flags.map((f) => sq(`${n.path}|${f}`)));
    if (valued.length) lines.push(`    ${valued.join('|')}) return 0 ;;`);
  }
  lines.push('  esac', '  return 1', '}', '');
  lines.push(`# ${fn}_values PATH OPTION: the option's fixed values, or @dir / @file / @none.`);
  lines.push(`${fn}_values() {`, '  case "$1|$2" in');
  for (const n of nodes) {
    for (const o of n.options.filter((x) => x.takesValue)) {
      const v = 'choices' in o.values ? o.values.choices.join(' ') : `@${o.values.kind}`;
      lines.push(`    ${o.flags.map((f) => sq(`${n.path}|${f}`)).join('|')}) echo ${sq(v)} ;;`);
    }
  }
  lines.push('  esac', '}', '');
  return lines;
}

// ---- bash -------------------------------------------------------------------------------------

function bashScript(root: CompletionNode): string {
  const fn = fnName(root);
  const nodes = walk(root);
  const lines = [
    `# bash completion for ${root.name}, generated from its command tree by \`${root.name} completion bash\`.`,
    `#   this shell:  source <(${root.name} completion bash)`,
    `#   every shell: ${root.name} completion bash > ~/.local/share/bash-completion/completions/${root.name}`,
    '',
    ...posixHelpers(root, fn),
    `# ${fn}_words PATH: the subcommands and positional choices of the command at PATH.`,
    `${fn}_words() {`,
    '  case "$1" in',
    ...nodes.map((n) => `    ${sq(n.path)}) echo ${sq([...n.children.map((c) => c.name), ...n.argChoices].join(' '))} ;;`),
    '  esac',
    '}',
    '',
    `# ${fn}_options PATH: the options of the command at PATH.`,
    `${fn}_options() {`,
    '  case "$1" in',
    ...nodes.map((n) => `    ${sq(n.path)}) echo ${sq(n.options.flatMap((o) => o.flags).join(' '))} ;;`),
    '  esac',
    '}',
    '',
    `${fn}() {`,
    `  local cur=\${COMP_WORDS[COMP_CWORD]} cmd=${sq(root.path)} skip=0`,
    '  COMPREPLY=()',
    `  ${fn}_walk "\${COMP_WORDS[@]:1:COMP_CWORD-1}"`,
    '  if ((skip)); then',
    `    local values; values=$(${fn}_values "$cmd" "\${COMP_WORDS[COMP_CWORD-1]}")`,
    '    case $values in',
    '      @dir) COMPREPLY=($(compgen -d -- "$cur")) ;;',
    '      @file) COMPREPLY=($(compgen -f -- "$cur")) ;;',
    '      @none) ;;',
    '      *) COMPREPLY=($(compgen -W "$values" -- "$cur")) ;;',
    '    esac',
    '  elif [[ $cur == -* ]]; then',
    `    COMPREPLY=($(compgen -W "$(${fn}_options "$cmd")" -- "$cur"))`,
    '  else',
    `    COMPREPLY=($(compgen -W "$(${fn}_words "$cmd")" -- "$cur"))`,
    '  fi',
    '}',
    '',
    `complete -F ${fn} ${root.name}`,
  ];
  return `${lines.join('\n')}\n`;
}

// ---- zsh --------------------------------------------------------------------------------------

/** "name:description" for _describe; a colon in the name must be escaped. */
function describeItem(name: string, description: string): string {
  return sq(`${name.replace(/:/g, '\\:')}:${description}`);
}

function zshScript(root: CompletionNode): string {
  const fn = fnName(root);
  const nodes = walk(root);
  const lines = [
    `#compdef ${root.name}`,
    `# zsh completion for ${root.name}, generated from its command tree by \`${root.name} completion zsh\`.`,
    `#   this shell:  source <(${root.name} completion zsh)          (after compinit)`,
    `#   every shell: ${root.name} completion zsh > "\${fpath[1]}/${fn}"   (then start a new shell)`,
    '',
    ...posixHelpers(root, fn),
    `# ${fn}_commands PATH: sets reply to the subcommands of PATH as name:description.`,
    `${fn}_commands() {`,
    '  case "$1" in',
    ...nodes.filter((n) => n.children.length).map((n) => `    ${sq(n.path)}) reply=(${n.children.map((c) => describeItem(c.name, c.description)).join(' ')}) ;;`),
    '    *) reply=() ;;',
    '  esac',
    '}',
    '',
    `# ${fn}_options PATH: sets reply to the options of PATH as flag:description.`,
    `${fn}_options() {`,
    '  case "$1" in',
    ...nodes.map((n) => `    ${sq(n.path)}) reply=(${n.options.flatMap((o) => o.flags.map((f) => describeItem(f, o.description))).join(' ')}) ;;`),
    '    *) reply=() ;;',
    '  esac',
    '}',
    '',
    `# ${fn}_args PATH: sets reply to the positional choices of PATH.`,
    `${fn}_args() {`,
    '  case "$1" in',
    ...nodes.filter((n) => n.argChoices.length).map((n) => `    ${sq(n.path)}) reply=(${n.argChoices.map(sq).join(' ')}) ;;`),
    '    *) reply=() ;;',
    '  esac',
    '}',
    '',
    `${fn}() {`,
    `  local cmd=${sq(root.path)} skip=0 values`,
    '  local -a reply',
    `  ${fn}_walk "\${(@)words[2,CURRENT-1]}"`,
    '  if ((skip)); then',
    `    values=$(${fn}_values "$cmd" "\${words[CURRENT-1]}")`,
    '    case $values in',
    '      @dir) _files -/ ;;',
    '      @file) _files ;;',
    '      @none) _message "value" ;;',
    '      *) compadd -- ${=values} ;;',
    '    esac',
    '    return',
    '  fi',
    '  if [[ ${words[CURRENT]} == -* ]]; then',
    `    ${fn}_options "$cmd"`,
    "    _describe -t options 'option' reply",
    '    return',
    '  fi',
    `  ${fn}_commands "$cmd"`,
    "  (( ${#reply} )) && _describe -t commands 'command' reply",
    `  ${fn}_args "$cmd"`,
    '  (( ${#reply} )) && compadd -- "${reply[@]}"',
    '  return 0',
    '}',
    '',
    '# Autoloaded from $fpath this file is the function body: complete now; sourced, register.',
    `if [[ "\${funcstack[1]}" == ${sq(fn)} ]]; then`,
    `  ${fn} "$@"`,
    'else',
    `  compdef ${fn} ${root.name}`,
    'fi',
  ];
  return `${lines.join('\n')}\n`;
}

// ---- fish -------------------------------------------------------------------------------------

function fishScript(root: CompletionNode): string {
  const fn = `_${fnName(root)}`;
  const nodes = walk(root);
  const lines = [
    `# fish completion for ${root.name}, generated from its command tree by \`${root.name} completion fish\`.`,
    `#   this shell:  ${root.name} completion fish | source`,
    `#   every shell: ${root.name} completion fish > ~/.config/fish/completions/${root.name}.fish`,
    '',
    `function ${fn}_canonical --description 'canonical name of subcommand $argv[2] under path $argv[1]'`,
    '    switch "$argv[1]|$argv[2]"',
  ];
  for (const n of nodes) {
    for (const c of n.children) lines.push(`        case ${[c.name, ...c.aliases].map((a) => fq(`${n.path}|${a}`)).join(' ')}`, `            echo ${fq(c.name)}`);
  }
  lines.push('    end', 'end', '');
  lines.push(`function ${fn}_takes_value --description 'whether option $argv[2] of path $argv[1] takes a value'`, '    switch "$argv[1]|$argv[2]"');
  for (const n of nodes) {
    const valued = n.options.filter((o) => o.takesValue).flatMap((o) => o.flags.map((f) => fq(`${n.path}|${f}`)));
    if (valued.length) lines.push(`        case ${valued.join(' ')}`, '            return 0');
  }
  lines.push('    end', '    return 1', 'end', '');
  lines.push(
    `function ${fn}_path --description 'the command path being completed'`,
    `    set -l path ${fq(root.path)}`,
    '    set -l skip 0',
    '    for w in (commandline -opc)[2..-1]',
    '        if test $skip = 1',
    '            set skip 0',
    '            continue',
    '        end',
    '        if string match -q -- \'-*\' $w',
    `            if not string match -q -- '*=*' $w; and ${fn}_takes_value "$path" $w`,
    '                set skip 1',
    '            end',
    '        else',
    `            set -l sub (${fn}_canonical "$path" $w)`,
    '            if test -n "$sub"',
    '                set path "$path $sub"',
    '            end',
    '        end',
    '    end',
    '    echo $path',
    'end',
    '',
    `function ${fn}_at --description 'whether the command being completed is at path $argv[1]'`,
    `    test (${fn}_path) = "$argv[1]"`,
    'end',
    '',
    `complete -c ${root.name} -f`,
  );
  for (const n of nodes) {
    const at = `-n ${fq(`${fn}_at ${sq(n.path)}`)}`;
    for (const c of n.children) lines.push(`complete -c ${root.name} ${at} -a ${fq(c.name)} -d ${fq(c.description)}`);
    if (n.argChoices.length) lines.push(`complete -c ${root.name} ${at} -a ${fq(n.argChoices.join(' '))}`);
    for (const o of n.options) {
      const flags = o.flags.map((f) => (f.startsWith('--') ? `-l ${fq(f.slice(2))}` : `-s ${fq(f.slice(1))}`)).join(' ');
      let value = '';
      if (o.takesValue) {
        if ('choices' in o.values) value = ` -x -a ${fq(o.values.choices.join(' '))}`;
        else if (o.values.kind === 'dir') value = ` -x -a '(__fish_complete_directories)'`;
        else if (o.values.kind === 'file') value = ' -r -F';
        else value = ' -x';
      }
      lines.push(`complete -c ${root.name} ${at} ${flags}${value} -d ${fq(o.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

// ---- the command ------------------------------------------------------------------------------

/** The completion script for `shell`, from the tree `program` heads. */
export function completionScript(program: Command, shell: Shell): string {
  const root = nodeOf(program, undefined, []);
  return shell === 'bash' ? bashScript(root) : shell === 'zsh' ? zshScript(root) : fishScript(root);
}

export function completionCommand(): Command {
  return new Command('completion')
    .summary('print a shell completion script (bash, zsh or fish)')
    .description(
      "Prints a script that completes meshctl's commands, options and fixed values (such as -o " +
        'formats and ztunnel-config sections) in bash, zsh or fish. It is generated from the ' +
        'commands of this meshctl, so it is as current as the binary that printed it.',
    )
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(SHELLS))
    .addHelpText(
      'after',
      `
Install:
  bash  this shell:  source <(meshctl completion bash)
        every shell: meshctl completion bash > ~/.local/share/bash-completion/completions/meshctl
              (or add \`source <(meshctl completion bash)\` to ~/.bashrc)
  zsh   this shell:  source <(meshctl completion zsh)      (compinit must have run)
        every shell: meshctl completion zsh > "\${fpath[1]}/_meshctl", then start a new shell
  fish  this shell:  meshctl completion fish | source
        every shell: meshctl completion fish > ~/.config/fish/completions/meshctl.fish

Examples:
  meshctl completion bash
  source <(meshctl completion bash) && meshctl ztunnel-config <TAB><TAB>
`,
    )
    .action((shell: Shell, _opts: unknown, cmd: Command) => {
      let root = cmd;
      while (root.parent) root = root.parent;
      process.stdout.write(completionScript(root, shell));
    });
}
