/**
 * `wirewatch capture create`: a packet capture on a VM (or a scale set), with the options of
 * `az network watcher packet-capture create` (docs/cli.md has the mapping); the network watcher
 * is the VM's location's. Without --wait it watches the start for 2 s.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { captureLimitBounds as L } from '../model/capture-limits.js';
import { filtersJson } from './format.js';
import { apiCommand, example, withClient, type GlobalOptions } from './cli-context.js';
import { RefusedError, UsageError } from './cli-errors.js';
import {
  captureRefIn,
  scaleSetIdOf,
  storageAccountIdOf,
  vmOf,
  watcherOfLocation,
} from './capture-ref.js';
import {
  captureCommandLine,
  interruptible,
  LiveLine,
  operationOf,
  refusalOf,
  waitForOperation,
  waitForStatus,
  type CaptureStatus,
} from './capture-status.js';
import { CAPTURE_COLUMNS, getCapture } from './capture-view.js';
import { refusalInOptionWords, type OptionFields } from './option-words.js';
import { printResult } from './output.js';
import {
  countOption,
  defaultHint,
  requireLocation,
  resolveSubscription,
  resourceGroupOrDefault,
} from './resource-scope.js';

/** How long `capture create` without --wait watches for a start that fails at once. */
const START_WATCH_MS = 2000;

/** az's three-state flags: `--continuous-capture` alone is true; or true/false, yes/no, 1/0. */
function flag(value: string | boolean): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.toLowerCase();
  if (['true', 't', 'yes', 'y', '1'].includes(v)) return true;
  if (['false', 'f', 'no', 'n', '0'].includes(v)) return false;
  throw new InvalidArgumentError('expected true or false');
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

/** `capture create`. */
export function captureCreateCommand(): Command {
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
      countOption('--capture-size'),
    )
    .option(
      '--capture-limit <bytes>',
      `largest capture file, bytes (default ${L.totalBytesPerSession.default})`,
      countOption('--capture-limit'),
    )
    .option(
      '--time-limit <seconds>',
      `capture duration (default and max ${L.timeLimitInSeconds.max})`,
      countOption('--time-limit'),
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
    .option(
      '--file-count <n>',
      `continuous: files kept (default ${L.fileCount.default})`,
      countOption('--file-count'),
    )
    .option(
      '--file-size <bytes>',
      `continuous: largest file (default ${L.fileSizeInBytes.default})`,
      countOption('--file-size'),
    )
    .option(
      '--session-time-limit <seconds>',
      `continuous: session duration (default ${L.sessionTimeLimitInSeconds.default})`,
      countOption('--session-time-limit'),
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
