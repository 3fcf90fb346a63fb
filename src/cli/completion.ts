import { Argument, Command } from 'commander';

export const COMPLETION_SHELLS = ['bash', 'zsh'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

/** What completion knows of one command: its path from the program, and what may follow. */
interface CompletionNode {
  /** Subcommand names from the program down, space-separated; '' for the program. */
  readonly path: string;
  readonly subcommands: readonly string[];
  /** Subcommands plus the choices of the first positional argument (`completion bash`). */
  readonly words: readonly string[];
  readonly options: readonly string[];
  /** Option flag (long and short) → its choices (`-o` → json table tsv). */
  readonly choices: ReadonlyMap<string, readonly string[]>;
}

/** `wirewatch completion bash|zsh`: a completion script read from the command tree itself. */
export function completionCommand(): Command {
  return new Command('completion')
    .description('print a bash or zsh completion script for wirewatch')
    .addArgument(new Argument('<shell>', 'the shell').choices(COMPLETION_SHELLS))
    .addHelpText(
      'after',
      `
The script is generated from the commands of this wirewatch, so it always matches them: it
completes commands, subcommands, long options and option values with fixed choices (-o, --role).

Examples:
  source <(wirewatch completion bash)      # bash, e.g. in ~/.bashrc
  source <(wirewatch completion zsh)       # zsh, in ~/.zshrc after compinit
  wirewatch completion zsh > "\${fpath[1]}/_wirewatch"   # zsh, installed once
`,
    )
    .action((shell: CompletionShell, _o: unknown, command: Command) => {
      let root = command;
      while (root.parent) root = root.parent;
      process.stdout.write(completionScript(shell, root));
    });
}

export function completionScript(shell: CompletionShell, program: Command): string {
  const nodes = collect(program, '');
  switch (shell) {
    case 'bash':
      return bashScript(program.name(), nodes);
    case 'zsh':
      return zshScript(program.name(), nodes);
  }
}

/** Words the script may hold unquoted: names, flags and choices, nothing a shell would expand. */
const SHELL_WORD = /^[\w.:@%+,=/-]+$/;

function safe(words: readonly string[]): string[] {
  return words.filter((w) => SHELL_WORD.test(w));
}

function collect(command: Command, path: string): CompletionNode[] {
  const subcommands = safe(command.commands.flatMap((c) => [c.name(), ...c.aliases()]));
  if (subcommands.length > 0) subcommands.push('help');
  const options = ['--help'];
  const choices = new Map<string, readonly string[]>();
  for (const option of command.options) {
    if (option.hidden) continue;
    if (option.long) options.push(option.long);
    if (option.argChoices) {
      for (const flag of [option.long, option.short]) {
        if (flag) choices.set(flag, safe(option.argChoices));
      }
    }
  }
  const argumentChoices = command.registeredArguments[0]?.argChoices ?? [];
  const node: CompletionNode = {
    path,
    subcommands,
    words: [...subcommands, ...safe(argumentChoices)],
    options: safe(options),
    choices,
  };
  return [
    node,
    ...command.commands
      .filter((c) => SHELL_WORD.test(c.name()))
      .flatMap((c) => collect(c, path === '' ? c.name() : `${path} ${c.name()}`)),
  ];
}

function caseTable(fn: string, entries: readonly (readonly [string, readonly string[]])[]): string {
  const arms = entries
    .filter(([, words]) => words.length > 0)
    .map(([key, words]) => `    '${key}') echo '${words.join(' ')}' ;;`);
  return `${fn}() {\n  case "$1" in\n${arms.join('\n')}\n  esac\n}\n`;
}

/** The shell functions both scripts share: the tree as case tables keyed by command path. */
function tables(name: string, nodes: readonly CompletionNode[]): string {
  const prefix = `_${name.replace(/\W/g, '_')}`;
  return [
    caseTable(
      `${prefix}_commands`,
      nodes.map((n) => [n.path, n.subcommands]),
    ),
    caseTable(
      `${prefix}_words`,
      nodes.map((n) => [n.path, n.words]),
    ),
    caseTable(
      `${prefix}_options`,
      nodes.map((n) => [n.path, n.options]),
    ),
    caseTable(
      `${prefix}_choices`,
      nodes.flatMap((n) =>
        [...n.choices].map(([flag, words]) => [`${n.path}|${flag}`, words] as const),
      ),
    ),
  ].join('\n');
}

function bashScript(name: string, nodes: readonly CompletionNode[]): string {
  const f = `_${name.replace(/\W/g, '_')}`;
  return `# bash completion for ${name}: source <(${name} completion bash)
# Generated from the commands of this ${name}; regenerate after an upgrade.

${tables(name, nodes)}
${f}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"
  local cmdpath="" word i words
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    if [[ " $(${f}_commands "$cmdpath") " == *" $word "* ]]; then
      cmdpath="\${cmdpath:+$cmdpath }$word"
    fi
  done
  words="$(${f}_choices "$cmdpath|$prev")"
  if [[ -z $words ]]; then
    if [[ $cur == -* ]]; then words="$(${f}_options "$cmdpath")"; else words="$(${f}_words "$cmdpath")"; fi
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -o default -F ${f} ${name}
`;
}

function zshScript(name: string, nodes: readonly CompletionNode[]): string {
  const f = `_${name.replace(/\W/g, '_')}`;
  // `path` is zsh's array tied to PATH: the command path is `cmdpath`.
  return `#compdef ${name}
# zsh completion for ${name}: source <(${name} completion zsh) after compinit, or save as
# _${name} in a directory of $fpath. Generated from the commands of this ${name}.

${tables(name, nodes)}
${f}() {
  local cur="\${words[CURRENT]}" prev="\${words[CURRENT-1]}" cmdpath="" word i
  local -a candidates
  for ((i = 2; i < CURRENT; i++)); do
    word="\${words[i]}"
    if [[ " $(${f}_commands "$cmdpath") " == *" $word "* ]]; then
      cmdpath="\${cmdpath:+$cmdpath }$word"
    fi
  done
  candidates=(\${=$(${f}_choices "$cmdpath|$prev")})
  if (( \${#candidates} == 0 )); then
    if [[ $cur == -* ]]; then
      candidates=(\${=$(${f}_options "$cmdpath")})
    else
      candidates=(\${=$(${f}_words "$cmdpath")})
    fi
  fi
  if (( \${#candidates} )); then
    compadd -a candidates
  else
    _files
  fi
}

if [[ "\${funcstack[1]}" == "${f}" ]]; then
  ${f} "$@"
else
  compdef ${f} ${name}
fi
`;
}
