#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { reportOf, UsageError } from './cli-errors.js';
import { adminCommand } from './admin.js';
import { agentCommand } from './agent.js';
import { auditCommand } from './audit.js';
import { captureCommand } from './capture.js';
import { captureLocalCommand } from './capture-local.js';
import { completionCommand } from './completion.js';
import { configureCommand } from './configure.js';
import { loginCommand } from './login.js';
import { serverCommand } from './server.js';
import { storageCommand } from './storage.js';
import { upCommand } from './up.js';
import { vmCommand } from './vm.js';
import { vmssCommand } from './vmss.js';
import { watcherCommand } from './watcher.js';

/**
 * Exit codes: 0 success; 1 a request the server refused, or a capture that failed; 2 a usage
 * error; 3 the server unreachable or its TLS certificate not trusted.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('wirewatch')
    .description('wirewatch: remotely started, filtered, bounded packet captures')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError(false)
    .addCommand(captureCommand())
    .addCommand(captureLocalCommand())
    .addCommand(agentCommand())
    .addCommand(serverCommand())
    .addCommand(upCommand())
    .addCommand(loginCommand())
    .addCommand(configureCommand())
    .addCommand(vmCommand())
    .addCommand(vmssCommand())
    .addCommand(watcherCommand())
    .addCommand(storageCommand())
    .addCommand(adminCommand())
    .addCommand(auditCommand())
    .addCommand(completionCommand());
  program.helpCommand(false).addCommand(helpCommand(program));
  // A reader that quits first (`wirewatch … | head -1`) is no failure: what is left to write is
  // dropped (stream and download stop reading as well). Any other write error is one line.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') return;
    process.stderr.write(`wirewatch: CommandFailed: cannot write to stdout: ${err.message}\n`);
    process.exitCode = 1;
  });
  exitOverrideAll(program);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    // --help and --version end by a CommanderError with exit code 0.
    if (err instanceof CommanderError && err.exitCode === 0) return 0;
    // A group called without its subcommand has printed its help on stderr.
    const { line, exitCode } = reportOf(
      err instanceof CommanderError && err.code === 'commander.help'
        ? new UsageError('a command is missing: the help above lists them')
        : err,
    );
    process.stderr.write(`${line}\n`);
    return exitCode;
  }
}

/**
 * Usage errors anywhere in the tree exit 2 instead of ending the process from commander, and
 * are printed by main in the one error format instead of commander's `error: …`.
 */
function exitOverrideAll(command: Command): void {
  command.exitOverride().configureOutput({ outputError: () => undefined });
  for (const sub of command.commands) exitOverrideAll(sub);
}

/**
 * `wirewatch help [COMMAND…]`: the help of any command, however deep (`help capture create`);
 * commander's own help command reaches only the first level.
 */
function helpCommand(program: Command): Command {
  return new Command('help')
    .description('show the help of a command: wirewatch help capture create')
    .argument('[command...]', 'the command, as typed after wirewatch')
    .action((names: string[]) => {
      let command = program;
      for (const name of names) {
        const sub = command.commands.find((c) => c.name() === name || c.aliases().includes(name));
        if (sub === undefined) {
          const known = command.commands.map((c) => c.name()).join(', ');
          throw new UsageError(
            `${fullName(command)} ${name} is not a command (${fullName(command)} has: ${known})`,
          );
        }
        command = sub;
      }
      command.outputHelp();
    });
}

function fullName(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

process.exitCode = await main(process.argv.slice(2));
