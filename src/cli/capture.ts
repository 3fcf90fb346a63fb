/**
 * `wirewatch capture create|show|show-status|list|stop|delete|wait|download|stream`: packet
 * captures on the server, with the options of `az network watcher packet-capture` (docs/cli.md
 * has the mapping). `create` (capture-create.ts) finds the network watcher from the VM's
 * location; the other commands from `--location`.
 */
import { Command, Option } from 'commander';
import { apiCommand, example, withClient, type GlobalOptions } from './cli-context.js';
import type { ApiClient } from './api-client.js';
import { describeCliError, RefusedError, UsageError } from './cli-errors.js';
import { captureCreateCommand } from './capture-create.js';
import { captureDownloadCommand } from './capture-download.js';
import { captureStreamCommand } from './capture-stream.js';
import { captureRefOf, LOCATION_HELP, watcherOfLocation, type CaptureRef } from './capture-ref.js';
import {
  captureCommandLine,
  INSTANCE_COLUMNS,
  interruptible,
  LiveLine,
  operationOf,
  queryStatus,
  refusalOf,
  showStatus,
  stateOf,
  STATUS_COLUMNS,
  waitForOperation,
  waitForStatus,
  type CaptureStatus,
  type InstanceStatus,
} from './capture-status.js';
import { CAPTURE_COLUMNS, getCapture, type CaptureView } from './capture-view.js';
import { printResult } from './output.js';
import { countOption, resolveSubscription } from './resource-scope.js';

/** An API command on one existing capture: `-l LOCATION -n NAME`. */
function onCapture(name: string): Command {
  return apiCommand(name)
    .option('-l, --location <location>', LOCATION_HELP)
    .requiredOption('-n, --name <name>', 'name of the packet capture');
}

interface OnCaptureOptions extends GlobalOptions {
  readonly location?: string;
  readonly name: string;
}

function showCommand(): Command {
  return onCapture('show')
    .description('show a packet capture (its properties); of a scale set, also its instances')
    .option(
      '--instances',
      "only a scale-set capture's instances: InstanceId, Status, StopReason, Packets, Bytes, Drops",
    )
    .addHelpText(
      'after',
      example(
        'wirewatch capture show -l westeurope -n https1 -o table',
        'wirewatch capture show -l westeurope -n all1 --instances -o tsv',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<OnCaptureOptions & { instances?: boolean }>();
      await withClient(command, async ({ client, output }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        const capture = await getCapture(client, ref);
        const instances = await instancesOf(client, ref, capture);
        if (o.instances) {
          if (instances === undefined) {
            throw new UsageError(
              `--instances: packet capture '${ref.name}' targets a VM; only a scale-set capture has instances`,
            );
          }
          printResult(output, instances, INSTANCE_COLUMNS);
          return;
        }
        printResult(output, capture, CAPTURE_COLUMNS);
        // A person reads the instances under the capture; json has them in its status, and tsv
        // keeps one kind of row (--instances gives them).
        if (output === 'table' && instances !== undefined) {
          process.stdout.write('\n');
          printResult(output, instances, INSTANCE_COLUMNS);
        }
      });
    });
}

/** A scale-set capture's instances (from its expanded status, else queryStatus); a VM's: none. */
async function instancesOf(
  client: ApiClient,
  ref: CaptureRef,
  capture: CaptureView,
): Promise<readonly InstanceStatus[] | undefined> {
  if (capture.properties.targetType?.toLowerCase() !== 'azurevmss') return undefined;
  return capture.properties.status?.instances ?? (await queryStatus(client, ref)).instances ?? [];
}

function showStatusCommand(): Command {
  return onCapture('show-status')
    .description('show a packet capture status: state, stop reason, packets, bytes, drops, upload')
    .addHelpText('after', example('wirewatch capture show-status -l westeurope -n https1 -o table'))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<OnCaptureOptions>();
      await withClient(command, async ({ client, output }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        printResult(output, await queryStatus(client, ref), STATUS_COLUMNS);
      });
    });
}

function listCommand(): Command {
  return apiCommand('list')
    .description('list the packet captures of a location')
    .option('-l, --location <location>', LOCATION_HELP)
    .addHelpText('after', example('wirewatch capture list -l westeurope -o table'))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<GlobalOptions & { location?: string }>();
      await withClient(command, async ({ client, output }) => {
        const watcher = await watcherOfLocation(
          client,
          await resolveSubscription(client),
          o.location,
        );
        // Each capture's status comes in the same answer ($expand=status), not a request each.
        const list = await client.get<{ value: CaptureView[] }>(`${watcher.id}/packetCaptures`, {
          $expand: 'status',
        });
        printResult(output, list.value, CAPTURE_COLUMNS);
      });
    });
}

function stopCommand(): Command {
  return onCapture('stop')
    .description('stop a running packet capture; prints its status')
    .option('--wait', 'return once the capture has stopped and its file is complete')
    .addHelpText('after', example('wirewatch capture stop -l westeurope -n https1 --wait'))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<OnCaptureOptions & { wait?: boolean }>();
      await withClient(command, async ({ client, output, options }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        const reply = await client.request('POST', `${ref.path}/stop`);
        const operation = operationOf(reply.headers);
        const waitLine = captureCommandLine('wait', ref, o.location, options);
        if (o.wait && operation) {
          const live = new LiveLine();
          await interruptible(
            live,
            `wirewatch: stopped waiting; packet capture '${ref.name}' is stopping on the server. Wait for it with: ${waitLine}`,
            () => waitForOperation(client, ref, operation, live),
          );
        }
        const status = await queryStatus(client, ref);
        printResult(output, status, STATUS_COLUMNS);
        if (!o.wait && operation && stateOf(status) === 'Stopping') {
          process.stderr.write(
            `wirewatch: packet capture '${ref.name}' is stopping; to return once it has stopped: ${waitLine}\n`,
          );
        }
      });
    });
}

function deleteCommand(): Command {
  return onCapture('delete')
    .description('delete a packet capture (a running one is stopped first); prints nothing')
    .option('--wait', 'return once the capture is gone')
    .addHelpText('after', example('wirewatch capture delete -l westeurope -n https1 --wait'))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<OnCaptureOptions & { wait?: boolean }>();
      await withClient(command, async ({ client, options }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        // DELETE answers 204 alike for a capture removed at once and for none at all (as
        // Azure): ask first, so that a mistyped name is said.
        try {
          await client.get(ref.path);
        } catch (err) {
          if (!(err instanceof RefusedError && err.code === 'ResourceNotFound')) throw err;
          process.stderr.write(
            `wirewatch: packet capture '${ref.name}' does not exist in location '${o.location ?? ref.watcher.location}'; nothing was deleted\n`,
          );
          return;
        }
        const reply = await client.request('DELETE', ref.path);
        const operation = operationOf(reply.headers);
        if (o.wait && operation) {
          const live = new LiveLine();
          await interruptible(
            live,
            `wirewatch: stopped waiting; packet capture '${ref.name}' is being stopped and deleted on the server. See it with: ${captureCommandLine('show-status', ref, o.location, options)}`,
            async () => {
              await showStatus(client, ref, live);
              await waitForOperation(client, ref, operation, live);
            },
          );
        }
      });
    });
}

interface WaitOptions extends OnCaptureOptions {
  readonly for: 'running' | 'stopped';
  readonly timeout?: number;
}

function waitCommand(): Command {
  return onCapture('wait')
    .description('wait until a packet capture runs or has stopped; prints its status')
    .addOption(
      new Option('--for <state>', 'running: until it runs; stopped: until it has ended')
        .choices(['running', 'stopped'])
        .default('stopped'),
    )
    .option(
      '--timeout <seconds>',
      'give up after this long (exit 1); default: no limit',
      countOption('--timeout', 1),
    )
    .addHelpText(
      'after',
      example(
        'wirewatch capture wait -l westeurope -n https1',
        'wirewatch capture wait -l westeurope -n https1 --for running --timeout 60',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<WaitOptions>();
      await withClient(command, async ({ client, output, options }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        const ended = (s: CaptureStatus) =>
          s.packetCaptureStatus === 'Stopped' || s.packetCaptureStatus === 'Error';
        const done =
          o.for === 'running'
            ? (s: CaptureStatus) => s.packetCaptureStatus === 'Running' || ended(s)
            : ended;
        const deadline = o.timeout === undefined ? Infinity : Date.now() + o.timeout * 1000;
        const live = new LiveLine();
        const status = await interruptible(
          live,
          `wirewatch: stopped waiting; packet capture '${ref.name}' keeps running. Stop it with: ${captureCommandLine('stop', ref, o.location, options)}`,
          () => waitForStatus(client, ref, done, live, deadline),
        );
        if (status === undefined) {
          const last = await queryStatus(client, ref);
          printResult(output, last, STATUS_COLUMNS);
          process.stderr.write(
            `wirewatch: WaitTimedOut: timed out after ${o.timeout} s: packet capture '${ref.name}' is ${last.packetCaptureStatus}\n`,
          );
          process.exitCode = 1;
          return;
        }
        printResult(output, status, STATUS_COLUMNS);
        if (status.packetCaptureStatus === 'Error') {
          process.stderr.write(`${describeCliError(refusalOf(status))}\n`);
          process.exitCode = 1;
        }
      });
    });
}

/** The `capture` command group, as az network watcher packet-capture. */
export function captureCommand(): Command {
  const group = new Command('capture')
    .description('packet captures on the server (as az network watcher packet-capture)')
    .addCommand(captureCreateCommand())
    .addCommand(showCommand())
    .addCommand(showStatusCommand())
    .addCommand(listCommand())
    .addCommand(stopCommand())
    .addCommand(deleteCommand())
    .addCommand(waitCommand())
    .addCommand(captureDownloadCommand())
    .addCommand(captureStreamCommand());
  return group;
}
