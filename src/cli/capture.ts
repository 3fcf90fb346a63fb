/**
 * `wirewatch capture create|show|show-status|list|stop|delete|wait|download`: packet captures on
 * the server, with the options of `az network watcher packet-capture` (docs/cli.md has the
 * mapping). `create` finds the network watcher from the VM's location; the other commands from
 * `--location`.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { captureLimitBounds } from '../capture/limits.js';
import { filtersJson } from './format.js';
import type { ApiClient } from './api-client.js';
import { apiCommand, withClient, type GlobalOptions } from './cli-context.js';
import { describeCliError, RefusedError, UsageError } from './cli-errors.js';
import { captureDownloadCommand } from './capture-download.js';
import { captureStreamCommand } from './capture-stream.js';
import {
  captureRefIn,
  captureRefOf,
  LOCATION_HELP,
  scaleSetIdOf,
  storageAccountIdOf,
  vmOf,
  watcherOfLocation,
  type CaptureRef,
} from './capture-ref.js';
import {
  captureCommandLine,
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
} from './capture-status.js';
import { refusalInOptionWords, type OptionFields } from './option-words.js';
import { printResult, type Column } from './output.js';
import {
  defaultHint,
  parseCount,
  requireLocation,
  resolveSubscription,
  resourceGroupOrDefault,
} from './resource-scope.js';

/** Azure's PacketCaptureResult (the fields the table shows), with `$expand=status`. */
interface CaptureView {
  readonly name: string;
  readonly id: string;
  readonly properties: {
    readonly provisioningState?: string;
    readonly target?: string;
    readonly timeLimitInSeconds?: number;
    readonly continuousCapture?: boolean;
    readonly captureSettings?: { readonly sessionTimeLimitInSeconds?: number };
    readonly storageLocation?: {
      readonly storageId?: string;
      readonly filePath?: string;
      readonly localPath?: string;
    };
    /** wirewatch's `$expand=status`: the capture's queryStatus. */
    readonly status?: CaptureStatus;
  };
}

const lastSegment = (id: string | undefined) => id?.split('/').filter(Boolean).pop();

/**
 * What a person asks of a capture list: its state and why it ended (provisioningState, which
 * reads Succeeded for every capture that started, is left to json), and the files it has.
 */
const CAPTURE_COLUMNS: readonly Column<CaptureView>[] = [
  { header: 'Name', get: (c) => c.name },
  {
    header: 'Status',
    get: (c) => (c.properties.status ? stateOf(c.properties.status) : undefined),
  },
  { header: 'StopReason', get: (c) => c.properties.status?.stopReason },
  { header: 'Target', get: (c) => lastSegment(c.properties.target) },
  { header: 'TimeLimit', get: (c) => timeLimitOf(c.properties), kind: 'seconds' },
  { header: 'File', get: (c) => filesOf(c.properties) },
  { header: 'StorageAccount', get: (c) => lastSegment(c.properties.storageLocation?.storageId) },
];

/** The largest limits, which a limit of 0 stands for. */
const MAX_TIME_LIMIT = captureLimitBounds.timeLimitInSeconds.max;
const MAX_SESSION_TIME_LIMIT = captureLimitBounds.sessionTimeLimitInSeconds.max;

/**
 * The time limit that ends the capture: for a continuous one the earlier of its session limit and
 * an explicit timeLimitInSeconds (the server echoes the latter only when it was given); 0 reads
 * as the largest limit, as the server applies it.
 */
function timeLimitOf(p: CaptureView['properties']): number | undefined {
  const time = p.timeLimitInSeconds === 0 ? MAX_TIME_LIMIT : p.timeLimitInSeconds;
  const given =
    p.continuousCapture === true ? p.captureSettings?.sessionTimeLimitInSeconds : undefined;
  const session = given === 0 ? MAX_SESSION_TIME_LIMIT : given;
  if (session === undefined) return time;
  return time === undefined ? session : Math.min(session, time);
}

/**
 * The capture's files: those the agent reported (a ring's `ring1_4.cap …`, which its localPath
 * only names the stem of); before a plain capture has started, the file it asked for. A capture
 * that asked for no file has none: what the agent reports is its spool, removed once uploaded.
 */
function filesOf(p: CaptureView['properties']): readonly string[] | string | undefined {
  if (p.storageLocation?.filePath === undefined && p.storageLocation?.localPath === undefined) {
    return undefined;
  }
  const files = p.status?.files ?? [];
  if (files.length > 0 || p.continuousCapture === true) return files;
  return p.storageLocation?.filePath ?? p.storageLocation?.localPath;
}

/** How long `capture create` without --wait watches for a start that fails at once. */
const START_WATCH_MS = 2000;

/** An option's whole number (0 allowed: the server reads 0 as "the maximum" for most limits). */
const count =
  (flag: string, min = 0) =>
  (value: string) =>
    parseCount(value, flag, min);

/** az's three-state flags: `--continuous-capture` alone is true; or true/false, yes/no, 1/0. */
function flag(value: string | boolean): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.toLowerCase();
  if (['true', 't', 'yes', 'y', '1'].includes(v)) return true;
  if (['false', 'f', 'no', 'n', '0'].includes(v)) return false;
  throw new InvalidArgumentError('expected true or false');
}

function example(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
}

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

/** The capture with its status (`$expand=status`), as show, list and create print it. */
async function getCapture(client: ApiClient, ref: CaptureRef): Promise<CaptureView> {
  return client.get<CaptureView>(ref.path, { $expand: 'status' });
}

interface CreateOptions extends GlobalOptions {
  readonly resourceGroup?: string;
  readonly name: string;
  readonly vm: string;
  readonly location?: string;
  readonly captureSize?: number;
  readonly captureLimit?: number;
  readonly timeLimit?: number;
  readonly storageAccount?: string;
  readonly storagePath?: string;
  readonly filePath?: string;
  readonly localPath?: string;
  readonly filters?: Record<string, unknown>[];
  readonly targetType?: 'AzureVM' | 'AzureVMSS';
  readonly include?: string[];
  readonly exclude?: string[];
  readonly continuousCapture?: boolean;
  readonly fileCount?: number;
  readonly fileSize?: number;
  readonly sessionTimeLimit?: number;
  readonly includeOwnTraffic?: boolean;
  readonly wait?: boolean;
}

/** The PacketCapture fields (under `properties`) by the option of `create` that sets them. */
const CREATE_FIELDS: OptionFields = {
  target: '--vm',
  targetType: '--target-type',
  'scope.include': '--include',
  'scope.exclude': '--exclude',
  bytesToCapturePerPacket: '--capture-size',
  totalBytesPerSession: '--capture-limit',
  timeLimitInSeconds: '--time-limit',
  'storageLocation.storageId': '--storage-account',
  'storageLocation.storagePath': '--storage-path',
  'storageLocation.filePath': '--file-path',
  'storageLocation.localPath': '--local-path',
  filters: '--filters',
  continuousCapture: '--continuous-capture',
  includeOwnTraffic: '--include-own-traffic',
  'captureSettings.fileCount': '--file-count',
  'captureSettings.fileSizeInBytes': '--file-size',
  'captureSettings.sessionTimeLimitInSeconds': '--session-time-limit',
};

/** The server's refusal of a create, about the option the user typed rather than the field. */
function inCreateWords(err: unknown, o: CreateOptions, properties: unknown): unknown {
  // --file-path goes to localPath with --continuous-capture (Azure's rule): name what was typed.
  const fields =
    o.localPath === undefined
      ? { ...CREATE_FIELDS, 'storageLocation.localPath': '--file-path' }
      : CREATE_FIELDS;
  return refusalInOptionWords(err, fields, properties);
}

/**
 * A capture that failed to start, said about the option typed: the agent's error names the
 * field (`filePath: cannot create …`) in its message only, which `--file-path` (or
 * `--local-path`) set.
 */
function startFailureInCreateWords(err: unknown, o: CreateOptions, properties: unknown): unknown {
  if (!(err instanceof RefusedError) || err.target !== undefined) return err;
  const field = /^(filePath|localPath): /.exec(err.message)?.[1];
  if (field === undefined) return err;
  // The agent says filePath for a ring's localPath too: the field is the one create sent.
  const sent = o.localPath === undefined && o.continuousCapture !== true ? 'filePath' : 'localPath';
  const target = `properties.storageLocation.${sent}`;
  const message = `${target}: ${err.message.slice(field.length + 2)}`;
  return inCreateWords(new RefusedError(err.status, err.code, message, target), o, properties);
}

function createCommand(): Command {
  return apiCommand('create')
    .description('create and start a packet capture on a VM')
    .requiredOption('-n, --name <name>', 'name of the packet capture')
    .requiredOption('--vm <name-or-id>', 'the VM to capture on: its name (with -g) or its id')
    .option('-g, --resource-group <group>', "the VM's resource group")
    .option(
      '-l, --location <location>',
      "location of the network watcher to use (default: the VM's location)",
    )
    .option(
      '--capture-size <bytes>',
      'bytes kept of each packet; 0 = whole packet',
      count('--capture-size'),
    )
    .option(
      '--capture-limit <bytes>',
      'largest capture file, bytes (default 1073741824)',
      count('--capture-limit'),
    )
    .option(
      '--time-limit <seconds>',
      'capture duration (default and max 18000)',
      count('--time-limit'),
    )
    .option('--storage-account <name-or-id>', 'storage account to upload the capture to')
    .option('--storage-path <url>', 'accepted for az compatibility; the server sets the blob URL')
    .option(
      '--file-path <path>',
      'capture file on the VM, under its capture root (localPath with --continuous-capture)',
    )
    .option('--local-path <path>', 'capture file on the VM for a continuous capture (localPath)')
    .option('--filters <json>', 'JSON array of PacketCaptureFilter objects', filtersJson)
    .addOption(
      new Option('--target-type <type>', 'type of the target').choices(['AzureVM', 'AzureVMSS']),
    )
    .option('--include <instances...>', 'AzureVMSS: instances to include (scope.include)')
    .option('--exclude <instances...>', 'AzureVMSS: instances to exclude (scope.exclude)')
    .option('--continuous-capture [bool]', 'capture into a ring of files (true/false)', flag)
    .option('--file-count <n>', 'continuous: files kept (default 10)', count('--file-count'))
    .option(
      '--file-size <bytes>',
      'continuous: largest file (default 104857600)',
      count('--file-size'),
    )
    .option(
      '--session-time-limit <seconds>',
      'continuous: session duration (default 86400)',
      count('--session-time-limit'),
    )
    .option(
      '--include-own-traffic',
      "capture the agent's own connections too (its channel and uploads; left out by default)",
    )
    .option(
      '--wait',
      'return once the capture runs (or fails to start); without it, create watches the start for 2 s',
    )
    .addHelpText(
      'after',
      example(
        `wirewatch capture create -g web --vm web-01 -n https1 --file-path /var/captures/https1.cap \\
      --filters '[{"protocol":"TCP","localPort":"443"}]' --time-limit 300 --wait`,
        'wirewatch capture create -g web --vm web-01 -n ring1 --storage-account logs \\\n      --continuous-capture --file-count 5 --file-size 10485760 --local-path /var/captures/ring1.cap',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<CreateOptions>();
      const ringOptions = [o.fileCount, o.fileSize, o.sessionTimeLimit];
      if (o.continuousCapture !== true && ringOptions.some((v) => v !== undefined)) {
        throw new UsageError(
          '--file-count, --file-size and --session-time-limit need --continuous-capture',
        );
      }
      if (o.filePath !== undefined && o.localPath !== undefined) {
        throw new UsageError('give --file-path or --local-path, not both');
      }
      const file = o.localPath ?? o.filePath;
      if (file === undefined && o.storageAccount === undefined) {
        throw new UsageError(
          'say where the capture goes: --storage-account, --file-path (a file on the VM), or both',
        );
      }
      const scaleSet = o.targetType === 'AzureVMSS';
      await withClient(command, async ({ client, output, options }) => {
        const subscription = await resolveSubscription(client);
        const group = resourceGroupOrDefault(client, o.resourceGroup);
        let target: string;
        let location: string;
        if (scaleSet) {
          if (o.location === undefined && client.connection.location === undefined) {
            throw new UsageError(
              `--target-type AzureVMSS needs --location (the scale set location), or a default: ${defaultHint('location')}`,
            );
          }
          target = scaleSetIdOf(subscription, o.vm, group);
          location = requireLocation(client, o.location);
        } else {
          const vm = await vmOf(client, subscription, o.vm, group);
          target = vm.id;
          location = o.location ?? vm.location;
        }
        const watcher = await watcherOfLocation(client, subscription, location);
        const ref = captureRefIn(watcher, o.name);
        const storageId =
          o.storageAccount === undefined
            ? undefined
            : await storageAccountIdOf(client, subscription, o.storageAccount, group);
        // Azure's rule: filePath for a plain capture, localPath once continuousCapture is given.
        const fileField =
          o.localPath !== undefined || o.continuousCapture !== undefined ? 'localPath' : 'filePath';
        const scope =
          o.include === undefined && o.exclude === undefined
            ? undefined
            : {
                ...(o.include === undefined ? {} : { include: o.include }),
                ...(o.exclude === undefined ? {} : { exclude: o.exclude }),
              };
        const properties = {
          target,
          ...(o.targetType === undefined ? {} : { targetType: o.targetType }),
          ...(scope === undefined ? {} : { scope }),
          ...(o.captureSize === undefined ? {} : { bytesToCapturePerPacket: o.captureSize }),
          ...(o.captureLimit === undefined ? {} : { totalBytesPerSession: o.captureLimit }),
          ...(o.timeLimit === undefined ? {} : { timeLimitInSeconds: o.timeLimit }),
          storageLocation: {
            ...(storageId === undefined ? {} : { storageId }),
            ...(o.storagePath === undefined ? {} : { storagePath: o.storagePath }),
            ...(file === undefined ? {} : { [fileField]: file }),
          },
          ...(o.filters === undefined ? {} : { filters: o.filters }),
          ...(o.continuousCapture === undefined ? {} : { continuousCapture: o.continuousCapture }),
          ...(o.continuousCapture === true
            ? {
                captureSettings: {
                  ...(o.fileCount === undefined ? {} : { fileCount: o.fileCount }),
                  ...(o.fileSize === undefined ? {} : { fileSizeInBytes: o.fileSize }),
                  ...(o.sessionTimeLimit === undefined
                    ? {}
                    : { sessionTimeLimitInSeconds: o.sessionTimeLimit }),
                },
              }
            : {}),
          ...(o.includeOwnTraffic === true ? { includeOwnTraffic: true } : {}),
        };
        const reply = await client
          .request('PUT', ref.path, { body: { properties } })
          .catch((err: unknown) => {
            throw inCreateWords(err, o, properties);
          });
        const started = (x: CaptureStatus) =>
          ['Running', 'Stopped', 'Error'].includes(x.packetCaptureStatus);
        await watchStart().catch((err: unknown) => {
          throw startFailureInCreateWords(err, o, properties);
        });
        printResult(output, await getCapture(client, ref), CAPTURE_COLUMNS);

        async function watchStart(): Promise<void> {
          if (o.wait) {
            const live = new LiveLine();
            await interruptible(
              live,
              `wirewatch: stopped waiting; packet capture '${ref.name}' keeps running. Stop it with: ${captureCommandLine('stop', ref, location, options)}`,
              async () => {
                const operation = operationOf(reply.headers);
                if (operation) {
                  await waitForOperation(client, ref, operation, live);
                } else {
                  // An identical re-PUT answers 200 without an operation: wait on the status.
                  const s = await waitForStatus(client, ref, started, live);
                  if (s?.packetCaptureStatus === 'Error') throw refusalOf(s);
                }
              },
            );
          } else {
            // Most failures to start (a file that exists, an interface that is gone) come within
            // a second: report them as --wait would; a slower start is left to `capture wait`.
            const s = await waitForStatus(
              client,
              ref,
              started,
              new LiveLine(false),
              Date.now() + START_WATCH_MS,
            );
            if (s?.packetCaptureStatus === 'Error') throw refusalOf(s);
            if (s === undefined) {
              process.stderr.write(
                `wirewatch: packet capture '${ref.name}' has not started yet; to see it start: ${captureCommandLine('wait', ref, location, options)} --for running\n`,
              );
            }
          }
        }
      });
    });
}

function showCommand(): Command {
  return onCapture('show')
    .description('show a packet capture (its properties)')
    .addHelpText('after', example('wirewatch capture show -l westeurope -n https1 -o table'))
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<OnCaptureOptions>();
      await withClient(command, async ({ client, output }) => {
        const ref = await captureRefOf(client, o.location, o.name);
        printResult(output, await getCapture(client, ref), CAPTURE_COLUMNS);
      });
    });
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
      count('--timeout', 1),
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
    .addCommand(createCommand())
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
