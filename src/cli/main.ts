#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { WirewatchError } from '../model/errors.js';
import { describeCliError, isCliError } from './cli-errors.js';
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
    .addCommand(watcherCommand())
    .addCommand(storageCommand())
    .addCommand(adminCommand())
    .addCommand(auditCommand())
    .addCommand(completionCommand());
  exitOverrideAll(program);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isCliError(err)) {
      process.stderr.write(`${describeCliError(err)}\n`);
      return err.exitCode;
    }
    if (err instanceof WirewatchError) {
      process.stderr.write(`wirewatch: ${err.code}: ${err.message}\n`);
      return err.status < 500 ? 2 : 1;
    }
    process.stderr.write(`wirewatch: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** Usage errors anywhere in the tree exit 2 instead of ending the process from commander. */
function exitOverrideAll(command: Command): void {
  for (const sub of command.commands) {
    sub.exitOverride();
    exitOverrideAll(sub);
  }
}

process.exitCode = await main(process.argv.slice(2));
