/**
 * The command table's other readers: help text, shell completion and "did you mean".
 * Everything here is generated from the same option definitions the parser uses, so a new
 * option shows up in `--help` and in completions without a second edit. Plain text only:
 * help is read in terminals, pagers and files alike.
 */

/** One option or positional of the command table (the fields the parser, help and completion read). */
export interface OptionDef {
  type: "boolean" | "string" | "positional";
  description?: string;
  /** One-letter short form, e.g. "f" for -f. */
  alias?: string;
  /** Placeholder for the value in help, e.g. "SECONDS". */
  valueHint?: string;
  /** Shown as "(default …)". */
  default?: string | boolean;
  required?: boolean;
  /** Values a shell may complete. */
  choices?: readonly string[];
  /** A string option that may be given several times: the parser collects its values in an array. */
  repeatable?: boolean;
}

export interface CommandSpec {
  name: string;
  description: string;
  args: Record<string, OptionDef>;
  /** Most positional arguments; Infinity when the last one repeats (`TOPIC...`). */
  maxPositionals: number;
  /** Which section of `mq help` lists it. */
  group: "client" | "daemon" | "other";
  examples?: string[];
}

export interface Program {
  name: string;
  version: string;
  description: string;
  commands: CommandSpec[];
}

/** The positionals of a command, as the usage line shows them: `ID TOPIC...`. */
function synopsis(cmd: CommandSpec): string {
  const positionals = Object.entries(cmd.args).filter(([, d]) => d.type === "positional");
  return positionals
    .map(([name, d], i) => {
      const word = (d.valueHint ?? name).toUpperCase() + (i === positionals.length - 1 && cmd.maxPositionals === Infinity ? "..." : "");
      return d.required === false ? `[${word}]` : word;
    })
    .join(" ");
}

function optionLabel(name: string, d: OptionDef): string {
  const short = d.alias ? `-${d.alias}, ` : "    ";
  const value = d.type === "string" ? ` ${d.valueHint ?? name.toUpperCase().replace(/-/g, "_")}` : "";
  return `${short}--${name}${value}`;
}

function columns(rows: Array<[string, string]>, indent = "  "): string[] {
  const width = Math.min(30, Math.max(...rows.map(([l]) => l.length)));
  return rows.map(([l, r]) => (r ? `${indent}${l.padEnd(width)}  ${r}` : `${indent}${l}`).trimEnd());
}

function describeOption(d: OptionDef): string {
  const parts = [d.description ?? ""];
  if (d.default !== undefined && d.default !== false) parts.push(`(default ${d.default})`);
  return parts.filter(Boolean).join(" ");
}

/** `mq --help` / `mq help`: every command by group. */
export function renderProgramHelp(p: Program): string {
  const out = [`${p.name} ${p.version}: ${p.description}`, "", `Usage: ${p.name} <command> [options]`];
  const groups: Array<[CommandSpec["group"], string]> = [
    ["client", "Commands (through the local broker):"],
    ["daemon", "Daemons (foreground, logs on stderr):"],
    ["other", "Other:"],
  ];
  for (const [group, title] of groups) {
    const rows = p.commands.filter((c) => c.group === group).map((c): [string, string] => [`${c.name} ${synopsis(c)}`.trim(), c.description]);
    if (rows.length > 0) out.push("", title, ...columns(rows));
  }
  out.push("", `Run \`${p.name} help COMMAND\` (or \`${p.name} COMMAND --help\`) for its options.`);
  return `${out.join("\n")}\n`;
}

/** `mq CMD --help` / `mq help CMD`. */
export function renderCommandHelp(p: Program, cmd: CommandSpec): string {
  const out = [`${p.name} ${cmd.name}: ${cmd.description}`, "", `Usage: ${p.name} ${cmd.name} ${synopsis(cmd)}${synopsis(cmd) ? " " : ""}[options]`];
  const positionals = Object.entries(cmd.args).filter(([, d]) => d.type === "positional");
  if (positionals.length > 0) {
    out.push("", "Arguments:", ...columns(positionals.map(([name, d]): [string, string] => [(d.valueHint ?? name).toUpperCase(), d.description ?? ""])));
  }
  const options = Object.entries(cmd.args).filter(([, d]) => d.type !== "positional");
  const rows = options.map(([name, d]): [string, string] => [optionLabel(name, d), describeOption(d)]);
  rows.push(["-h, --help", "show this help"]);
  out.push("", "Options:", ...columns(rows));
  if (cmd.examples?.length) out.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  return `${out.join("\n")}\n`;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The closest of `candidates` to a mistyped `word`, if one is close enough to be a typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 2 ? 0.5 : distance(word, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const limit = word.length <= 2 ? 1 : Math.max(2, Math.floor(word.length / 2));
  return bestDistance <= limit ? best : undefined;
}

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = (typeof SHELLS)[number];

/**
 * Words a shell completes after an option: its choices, or files for an option whose value is
 * a path (by its value hint: a match on the name took `--max-open-files` and `--local-http`
 * for paths and missed `--config`).
 */
function valueCompletion(d: OptionDef): "choices" | "files" | "none" {
  if (d.choices) return "choices";
  return d.valueHint === "FILE" || d.valueHint === "DIR" || d.valueHint === "PATH" ? "files" : "none";
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** A completion script for `shell`; `source <(mq completion bash)` loads it. */
export function renderCompletion(p: Program, shell: Shell): string {
  const names = p.commands.map((c) => c.name);
  const optionsOf = (c: CommandSpec) => Object.entries(c.args).filter(([, d]) => d.type !== "positional");
  const takesTopics = (c: CommandSpec) => "topic" in c.args;
  const topicsCmd = `${p.name} topics --json 2>/dev/null | sed -n 's/^{"topic":"\\([^"]*\\)".*/\\1/p'`;
  if (shell === "bash") {
    const cases = p.commands.map((c) => {
      const words = optionsOf(c).flatMap(([n, d]) => [`--${n}`, ...(d.alias ? [`-${d.alias}`] : [])]);
      const values = optionsOf(c)
        .filter(([n, d]) => d.type === "string" && valueCompletion(d) !== "none")
        .map(([n, d]) => {
          const flags = [`--${n}`, ...(d.alias ? [`-${d.alias}`] : [])].join("|");
          const action = valueCompletion(d) === "choices" ? `COMPREPLY=($(compgen -W ${quote(d.choices!.join(" "))} -- "$cur"))` : `COMPREPLY=($(compgen -f -- "$cur"))`;
          return `        ${flags}) ${action}; return ;;`;
        });
      const rest = c.name === "help" ? `COMPREPLY=($(compgen -W ${quote(names.join(" "))} -- "$cur"))` : c.name === "completion" ? `COMPREPLY=($(compgen -W ${quote(SHELLS.join(" "))} -- "$cur"))` : takesTopics(c) && c.maxPositionals > 1 ? `COMPREPLY=($(compgen -W "$(${topicsCmd})" -- "$cur"))` : ":";
      return [
        `    ${c.name})`,
        `      case "$prev" in`,
        ...values,
        `      esac`,
        `      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W ${quote([...words, "--help"].join(" "))} -- "$cur")); else ${rest}; fi ;;`,
      ].join("\n");
    });
    return [
      `# bash completion for ${p.name}: source <(${p.name} completion bash)`,
      `_${p.name}() {`,
      `  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}"`,
      `  COMPREPLY=()`,
      `  if [[ $COMP_CWORD -eq 1 ]]; then COMPREPLY=($(compgen -W ${quote([...names, "--help", "--version"].join(" "))} -- "$cur")); return; fi`,
      `  case "\${COMP_WORDS[1]}" in`,
      ...cases,
      `  esac`,
      `}`,
      `complete -F _${p.name} ${p.name}`,
      "",
    ].join("\n");
  }
  if (shell === "zsh") {
    const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/'/g, `'\\''`).replace(/([\[\]:])/g, "\\$1");
    const cases = p.commands.map((c) => {
      const specs = optionsOf(c).map(([n, d]) => {
        const value = d.type === "string" ? `:${esc((d.valueHint ?? n).toLowerCase())}:${valueCompletion(d) === "choices" ? `(${d.choices!.join(" ")})` : valueCompletion(d) === "files" ? "_files" : " "}` : "";
        const names = d.alias ? `'(-${d.alias} --${n})'{-${d.alias},--${n}}'` : `'--${n}`;
        return `        ${names}[${esc(d.description ?? "")}]${value}'`;
      });
      const rest = c.name === "help" ? `'*:command:(${names.join(" ")})'` : c.name === "completion" ? `'1:shell:(${SHELLS.join(" ")})'` : takesTopics(c) && c.maxPositionals > 1 ? `'*:topic:_${p.name}_topics'` : "";
      return [`    ${c.name})`, `      _arguments -s \\`, ...specs.map((s) => `${s} \\`), `        ${rest || "'*: :'"} ;;`].join("\n");
    });
    return [
      `#compdef ${p.name}`,
      `# zsh completion for ${p.name}: source <(${p.name} completion zsh) after compinit`,
      `_${p.name}_topics() { local -a t; t=(\${(f)"$(${topicsCmd})"}); compadd -a t }`,
      `_${p.name}() {`,
      `  local -a commands`,
      `  commands=(${p.commands.map((c) => quote(`${c.name}:${c.description.replace(/:/g, "\\:")}`)).join(" ")})`,
      `  if (( CURRENT == 2 )); then _describe 'command' commands; return; fi`,
      `  words=("\${(@)words[2,-1]}"); (( CURRENT-- ))`,
      `  case "\${words[1]}" in`,
      ...cases,
      `  esac`,
      `}`,
      `compdef _${p.name} ${p.name}`,
      "",
    ].join("\n");
  }
  const lines = [`# fish completion for ${p.name}: ${p.name} completion fish | source`, `complete -c ${p.name} -f`];
  for (const c of p.commands) lines.push(`complete -c ${p.name} -n __fish_use_subcommand -a ${c.name} -d ${quote(c.description)}`);
  for (const c of p.commands) {
    const when = `-n ${quote(`__fish_seen_subcommand_from ${c.name}`)}`;
    for (const [n, d] of optionsOf(c)) {
      const value = d.type !== "string" ? "" : valueCompletion(d) === "choices" ? ` -x -a ${quote(d.choices!.join(" "))}` : valueCompletion(d) === "files" ? " -r -F" : " -x";
      lines.push(`complete -c ${p.name} ${when} -l ${n}${d.alias ? ` -s ${d.alias}` : ""}${value} -d ${quote(d.description ?? "")}`);
    }
    if (c.name === "help") lines.push(`complete -c ${p.name} ${when} -a ${quote(names.join(" "))}`);
    if (c.name === "completion") lines.push(`complete -c ${p.name} ${when} -a ${quote(SHELLS.join(" "))}`);
    if (takesTopics(c) && c.maxPositionals > 1) lines.push(`complete -c ${p.name} ${when} -a ${quote(`(${topicsCmd})`)}`);
  }
  return `${lines.join("\n")}\n`;
}
