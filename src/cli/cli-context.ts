import { Command, Option } from 'commander';
import { ApiClient } from './api-client.js';
import { UsageError } from './cli-errors.js';
import { OUTPUT_FORMATS, type OutputFormat } from './output.js';
import { resolveConnection } from './profile.js';

/**
 * Options every API command takes. They are declared on each API command (not on the program)
 * so that `wirewatch agent --subscription` keeps its own meaning, and so that they can follow
 * the command as in az: `wirewatch capture list -o table`.
 */
export interface GlobalOptions {
  readonly subscription?: string;
  readonly profile?: string;
  /** Absent on a command without -o (`capture stream`). */
  readonly output?: OutputFormat;
}

/** A command's help text's examples, each on a line of its own. */
export function example(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

/**
 * An API command: a Command with --subscription, --profile and --output (`output: false` for a
 * command whose stdout is not a result, as `capture stream`'s pcap bytes).
 */
export function apiCommand(name: string, { output = true }: { output?: boolean } = {}): Command {
  const command = new Command(name)
    .option('--subscription <id>', "subscription to act in (default: the profile's)")
    .option('--profile <name>', 'saved profile to use (default: the current one)');
  return output
    ? command.addOption(
        new Option('-o, --output <format>', 'output format')
          .choices(OUTPUT_FORMATS)
          .default('json'),
      )
    : command;
}

export interface CliContext {
  readonly client: ApiClient;
  readonly output: OutputFormat;
  readonly options: GlobalOptions;
}

/** Resolves the connection for a command and runs `fn` with a client, closing it afterwards. */
export async function withClient<T>(
  command: Command,
  fn: (ctx: CliContext) => Promise<T>,
): Promise<T> {
  const options = command.opts<GlobalOptions>();
  const connection = await resolveConnection({
    ...(options.profile === undefined ? {} : { profile: options.profile }),
    ...(options.subscription === undefined ? {} : { subscription: options.subscription }),
  });
  const client = new ApiClient(connection);
  try {
    return await fn({ client, output: options.output ?? 'json', options });
  } finally {
    client.close();
  }
}

/** A required option's value, for options commander cannot mark required (shared ones). */
export function need(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}
