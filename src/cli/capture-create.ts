/**
 * `wirewatch capture create`: a packet capture on a VM or a scale set's instances, with the
 * options of `az network watcher packet-capture create` (docs/cli.md has the mapping; the
 * request itself is built in capture-create-body.ts); the network watcher is the target's
 * location's. Without --wait it watches the start for 2 s.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { captureLimitBounds as L } from '../model/capture-limits.js';
import { filtersJson } from './format.js';
import { apiCommand, example, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import {
  createProperties,
  refusalInCreateWords,
  startFailureInCreateWords,
  targetChoice,
  type CreateOptions,
} from './capture-create-body.js';
import { captureRefIn, storageAccountIdOf, targetOf, watcherOfLocation } from './capture-ref.js';
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
import { printResult } from './output.js';
import { countOption, resolveSubscription, resourceGroupOrDefault } from './resource-scope.js';

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

/** `capture create`. */
export function captureCreateCommand(): Command {
  return apiCommand('create')
    .description('create and start a packet capture on a VM or on the instances of a scale set')
    .requiredOption('-n, --name <name>', 'name of the packet capture')
    .option(
      '--vm <name-or-id>',
      'the VM to capture on: its name (with -g) or its id; with --target-type AzureVMSS, a scale set',
    )
    .option(
      '--vmss <name-or-id>',
      'the scale set to capture on (its instances): name (with -g) or id',
    )
    .option(
      '--target <name-or-id>',
      "az's other name for --vm: a VM, or a scale set by --target-type",
    )
    .option('-g, --resource-group <group>', "the VM's or scale set's resource group")
    .option(
      '-l, --location <location>',
      "location of the network watcher to use (default: the VM's or scale set's location)",
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
      new Option('--target-type <type>', 'type of the target (default AzureVM)').choices([
        'AzureVM',
        'AzureVMSS',
      ]),
    )
    .option(
      '--include <instances...>',
      'scale set: only these instances (ids such as 0 1, or instance ids); default all',
    )
    .option(
      '--exclude <instances...>',
      'scale set: all instances but these, also those that join while it runs',
    )
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
        'wirewatch capture create -g web --vmss web -n all1 --storage-account logs --exclude 3 --time-limit 60',
      ),
    )
    .action(async (_opts: unknown, command: Command) => {
      const o = command.opts<CreateOptions>();
      const choice = targetChoice(o);
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
      await withClient(command, async ({ client, output, options }) => {
        const subscription = await resolveSubscription(client);
        const group = resourceGroupOrDefault(client, o.resourceGroup);
        const target = await targetOf(client, subscription, choice, group);
        const location = o.location ?? target.location;
        const watcher = await watcherOfLocation(client, subscription, location);
        const ref = captureRefIn(watcher, o.name);
        const storageId =
          o.storageAccount === undefined
            ? undefined
            : await storageAccountIdOf(client, subscription, o.storageAccount, group);
        const properties = createProperties(o, choice, target.id, storageId);
        const reply = await client
          .request('PUT', ref.path, { body: { properties } })
          .catch((err: unknown) => {
            throw refusalInCreateWords(err, o, choice, properties);
          });
        const started = (x: CaptureStatus) =>
          ['Running', 'Stopped', 'Error'].includes(x.packetCaptureStatus);
        await watchStart().catch((err: unknown) => {
          throw startFailureInCreateWords(err, o, choice, properties);
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
