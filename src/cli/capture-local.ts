import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_CAPTURE_ROOT } from '../capture/capture-path.js';
import { parseFilters } from '../capture/filter.js';
import type { PacketCaptureFilter } from '../capture/filter-spec.js';
import { checkInterfaceExists } from '../capture/interface-addresses.js';
import {
  captureLimitBounds as L,
  resolveCaptureLimits,
  resolveRingSettings,
} from '../model/capture-limits.js';
import { startCapture, type CaptureProgress, type CaptureResult } from '../capture/runner.js';
import { WirewatchError } from '../model/errors.js';
import { filtersJson, formatBytes, formatDuration } from './format.js';
import { inOptionWords, type OptionFields } from './option-words.js';

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

interface CaptureLocalOptions {
  interface: string;
  netns?: string;
  filters?: PacketCaptureFilter[];
  bytesPerPacket?: number;
  bytesPerSession?: number;
  timeLimit?: number;
  continuous?: boolean;
  fileCount?: number;
  fileSize?: number;
  sessionTimeLimit?: number;
  file: string;
  captureRoot: string;
  json?: boolean;
}

function progressLine(p: CaptureProgress): string {
  return `capturing ${formatDuration(p.elapsedMs)}  packets ${p.packets}  ${formatBytes(p.bytes)}  kernel drops ${p.kernelDrops}`;
}

function summary(result: CaptureResult): string {
  const lines = [
    `stopped: ${result.stopReason}${result.error ? ` (${result.error.code}: ${result.error.message})` : ''}`,
    `packets: ${result.packets} written, ${result.tcpdumpCaptured} captured${
      result.outsideTimeLimit > 0
        ? ` (${result.outsideTimeLimit} stamped outside the time limit, left out)`
        : ''
    }, ${result.kernelDrops} dropped by kernel`,
    `bytes:   ${result.bytes} (${formatBytes(result.bytes)})`,
    `time:    ${formatDuration(result.elapsedMs)}`,
    ...result.files.map((f) => `file:    ${f}`),
  ];
  return lines.join('\n') + '\n';
}

/** The fields the model's checks name, by the option of capture-local that sets them. */
const FIELDS: OptionFields = {
  bytesToCapturePerPacket: '--bytes-per-packet',
  totalBytesPerSession: '--bytes-per-session',
  timeLimitInSeconds: '--time-limit',
  'captureSettings.fileCount': '--file-count',
  'captureSettings.fileSizeInBytes': '--file-size',
  'captureSettings.sessionTimeLimitInSeconds': '--session-time-limit',
  filters: '--filters',
  filePath: '--file',
  interface: '--interface',
  netns: '--netns',
};

/** A model error about a field, said about capture-local's option (and its --capture-root). */
function inLocalWords(err: unknown, opts: CaptureLocalOptions): unknown {
  if (!(err instanceof WirewatchError)) return err;
  const message = inOptionWords(err, FIELDS, { filters: opts.filters }) ?? err.message;
  const rooted = message.replace(/(the )?capture root /g, '--capture-root ');
  if (rooted === err.message) return err;
  return new WirewatchError(err.code, rooted, {
    ...(err.target === undefined ? {} : { target: err.target }),
    cause: err,
  });
}

/** `wirewatch capture-local`: one capture on this host, in the foreground. */
export function captureLocalCommand(): Command {
  return new Command('capture-local')
    .description('run one capture on this host in the foreground, until a limit or Ctrl-C')
    .requiredOption('-i, --interface <name>', 'interface to capture on')
    .option('--netns <name>', 'network namespace the interface lives in')
    .option(
      '--filters <json>',
      'Azure PacketCaptureFilter array, e.g. \'[{"protocol":"TCP","localPort":"80"}]\'',
      filtersJson,
    )
    .option('--bytes-per-packet <n>', 'bytes kept per packet (0 = whole packet)', wholeNumber)
    .option(
      '--bytes-per-session <n>',
      `largest capture file, bytes (default ${L.totalBytesPerSession.default})`,
      wholeNumber,
    )
    .option(
      '--time-limit <seconds>',
      `capture duration limit (default and max ${L.timeLimitInSeconds.max})`,
      wholeNumber,
    )
    .option('--continuous', 'continuous capture into a ring of files')
    .option(
      '--file-count <n>',
      `ring: number of files kept (default ${L.fileCount.default}, max ${L.fileCount.max})`,
      wholeNumber,
    )
    .option(
      '--file-size <bytes>',
      `ring: size of each file (default ${L.fileSizeInBytes.default})`,
      wholeNumber,
    )
    .option(
      '--session-time-limit <seconds>',
      `ring: session duration limit (default ${L.sessionTimeLimitInSeconds.default}, max ${L.sessionTimeLimitInSeconds.max})`,
      wholeNumber,
    )
    .requiredOption('-f, --file <path>', 'capture file (.cap or .pcap) under the capture root')
    .addOption(
      new Option('--capture-root <dir>', 'folder every capture file must lie under').default(
        DEFAULT_CAPTURE_ROOT,
      ),
    )
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Example:
  wirewatch capture-local -i eth0 --filters '[{"protocol":"TCP","localPort":"443"}]' \\
    --time-limit 60 --file /var/captures/https.cap`,
    )
    .action(async (opts: CaptureLocalOptions) => {
      try {
        await captureLocal(opts);
      } catch (err) {
        throw inLocalWords(err, opts);
      }
    });
}

async function captureLocal(opts: CaptureLocalOptions): Promise<void> {
  const ringOptions = [opts.fileCount, opts.fileSize, opts.sessionTimeLimit];
  if (!opts.continuous && ringOptions.some((v) => v !== undefined)) {
    throw new WirewatchError(
      'InvalidCaptureLimit',
      '--file-count, --file-size and --session-time-limit need --continuous',
    );
  }
  const filters = parseFilters(opts.filters);
  const { timeLimitInSeconds, ...otherLimits } = resolveCaptureLimits({
    bytesToCapturePerPacket: opts.bytesPerPacket,
    totalBytesPerSession: opts.bytesPerSession,
    timeLimitInSeconds: opts.timeLimit,
  });
  // A ring runs for its session limit; an explicit --time-limit bounds it too (the earlier
  // limit ends the capture), its default does not.
  const limits =
    opts.continuous && opts.timeLimit === undefined
      ? otherLimits
      : { ...otherLimits, timeLimitInSeconds };
  const ring = opts.continuous
    ? resolveRingSettings({
        fileCount: opts.fileCount,
        fileSizeInBytes: opts.fileSize,
        sessionTimeLimitInSeconds: opts.sessionTimeLimit,
      })
    : undefined;
  await checkInterfaceExists(opts.interface, opts.netns);
  const tty = process.stderr.isTTY;
  const controller = new AbortController();
  // Every Ctrl-C is caught: a second one must not kill wirewatch while it finishes the file.
  const onSignal = () => {
    process.stderr.write(controller.signal.aborted ? 'still stopping…\n' : '\nstopping…\n');
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const session = await startCapture({
      interface: opts.interface,
      ...(opts.netns === undefined ? {} : { netns: opts.netns }),
      filters,
      limits,
      ...(ring === undefined ? {} : { ring }),
      filePath: opts.file,
      captureRoot: opts.captureRoot,
      signal: controller.signal,
      ...(tty
        ? {
            onProgress: (p: CaptureProgress) => process.stderr.write(`\r\x1b[K${progressLine(p)}`),
          }
        : {}),
    });
    if (!tty) process.stderr.write(`capturing on ${opts.interface}\n`);
    const result = await session.result;
    if (tty) process.stderr.write('\r\x1b[K');
    process.stdout.write(
      opts.json
        ? JSON.stringify({ ...result, error: result.error?.toBody().error }, null, 2) + '\n'
        : summary(result),
    );
    if (result.stopReason === 'Error') process.exitCode = 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
