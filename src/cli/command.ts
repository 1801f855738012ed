// The one argument-parsing path of every subcommand: node:util parseArgs plus --help. What parseArgs refuses
// (unknown option, missing or bad value, stray argument) becomes a UsageError, which main.ts reports once as
// one line, never as a Node stack trace.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { errorMessage } from '../async/error-message.ts';

/** Exit code of every usage error of every subcommand: 1, which `enbi diff` documented first (its 2 means builds would start). */
export const EXIT_USAGE = 1;

/** The command line is wrong: unknown option, bad or missing value, wrong arguments. */
export class UsageError extends Error {}

type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; allowPositionals: true }>
>;

/** The typed option values of a command's options. */
export type Flags<O extends ParseArgsOptionsConfig> = Parsed<O>['values'];

export interface Command<O extends ParseArgsOptionsConfig = ParseArgsOptionsConfig> {
  /** Printed by --help (and -h). */
  usage: string;
  options: O;
  /** Whether positional arguments are allowed (default: none). */
  positionals?: boolean;
  run(args: Parsed<O>): Promise<number>;
}

/** Declares a command; `const` keeps the option types literal, so that run() sees typed values. */
export function command<const O extends ParseArgsOptionsConfig>(c: Command<O>): Command<O> {
  return c;
}

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/** Parses argv for the command, prints its usage on --help, else runs it. Throws UsageError for a bad command line. */
export async function runCommand(c: Command, argv: string[]): Promise<number> {
  const parsed = parseCommandLine(c, argv);
  if (parsed.values.help === true) {
    console.log(c.usage);
    return 0;
  }
  return c.run(parsed);
}

function parseCommandLine(c: Command, argv: string[]) {
  const options = { ...c.options, ...HELP };
  try {
    return parseArgs({ args: argv, options, allowPositionals: c.positionals === true });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) throw err;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = unknownOption(argv, options);
      throw new UsageError(option !== undefined ? `unknown option '${option}'` : errorMessage(err));
    }
    // Node's own text for the rest names the option or argument (main.ts puts it on one line).
    const message = errorMessage(err);
    throw new UsageError(message.charAt(0).toLowerCase() + message.slice(1));
  }
}

/** The first option that the command does not declare, as typed (`--bogus`, `-x`): Node's message adds advice meant for `node` itself. */
function unknownOption(argv: string[], options: ParseArgsOptionsConfig): string | undefined {
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const unknown = tokens.find((t) => t.kind === 'option' && !Object.hasOwn(options, t.name));
  return unknown?.kind === 'option' ? unknown.rawName : undefined;
}
