/**
 * A capture's status as `queryStatus` answers it, the live line `--wait` and `capture wait`
 * show on a terminal, and the polling of Azure's long-running operations.
 */
import type { ApiClient } from './api-client.js';
import { RefusedError } from './cli-errors.js';
import type { CaptureRef } from './capture-ref.js';
import { formatBytes, formatDuration } from './format.js';
import type { Column } from './output.js';
import { onServer } from './resource-scope.js';

/** queryStatus: Azure's PacketCaptureQueryStatusResult and wirewatch's additions. */
export interface CaptureStatus {
  readonly name: string;
  readonly id: string;
  readonly packetCaptureStatus: 'NotStarted' | 'Running' | 'Stopped' | 'Error' | 'Unknown';
  readonly stopReason?: string;
  readonly captureStartTime?: string;
  readonly captureStopTime?: string;
  readonly packetCaptureError: readonly string[];
  readonly packetCaptureErrorDetails: readonly { code: string; message: string }[];
  readonly packetsCaptured: number;
  readonly bytesCaptured: number;
  readonly packetsDropped: number;
  readonly stopRequested?: string;
  readonly lastProgressTime?: string;
  readonly uploadState?: string;
  readonly agentConnectionState?: string;
  readonly files?: readonly string[];
  /** A scale-set capture's instances (wirewatch's extension), by instance id. */
  readonly instances?: readonly InstanceStatus[];
}

/** One instance of a scale-set capture, as queryStatus's `instances` shows it. */
export interface InstanceStatus {
  readonly instanceId: string;
  readonly status: CaptureStatus['packetCaptureStatus'];
  readonly stopReason?: string;
  readonly errors?: readonly unknown[];
  readonly packets: number;
  readonly bytes: number;
  readonly drops: number;
  readonly files?: readonly string[];
  readonly blobs?: readonly string[];
}

/** `capture show --instances`, and under a scale-set capture's table: one row per instance. */
export const INSTANCE_COLUMNS: readonly Column<InstanceStatus>[] = [
  { header: 'InstanceId', get: (i) => i.instanceId },
  { header: 'Status', get: (i) => i.status },
  { header: 'StopReason', get: (i) => i.stopReason },
  { header: 'Packets', get: (i) => i.packets },
  { header: 'Bytes', get: (i) => i.bytes, kind: 'bytes' },
  { header: 'Drops', get: (i) => i.drops },
];

/**
 * The state a person reads: `Stopping` for a capture still running after a stop was asked for
 * (json keeps Azure's packetCaptureStatus and shows `stopRequested`).
 */
export function stateOf(s: CaptureStatus): string {
  return s.packetCaptureStatus === 'Running' && s.stopRequested !== undefined
    ? 'Stopping'
    : s.packetCaptureStatus;
}

/** Why a capture failed or is not known: each error detail as `CODE: message`. */
export function errorOf(s: CaptureStatus): string | undefined {
  const details = s.packetCaptureErrorDetails.map((d) => `${d.code}: ${d.message}`);
  return details.length > 0 ? details.join('; ') : undefined;
}

export const STATUS_COLUMNS: readonly Column<CaptureStatus>[] = [
  { header: 'Name', get: (s) => s.name },
  { header: 'Status', get: stateOf },
  { header: 'StopReason', get: (s) => s.stopReason },
  { header: 'Packets', get: (s) => s.packetsCaptured },
  { header: 'Bytes', get: (s) => s.bytesCaptured, kind: 'bytes' },
  { header: 'Drops', get: (s) => s.packetsDropped },
  { header: 'Upload', get: (s) => s.uploadState },
  { header: 'Error', get: errorOf },
];

/**
 * A `wirewatch capture VERB` command line on the same capture, to print as advice: with the
 * location, the name and the --subscription/--profile the user gave, quoted for a shell.
 */
export function captureCommandLine(
  verb: string,
  ref: CaptureRef,
  location: string | undefined,
  options: { readonly subscription?: string; readonly profile?: string } = {},
): string {
  const quote = (w: string) => (/^[\w.,:@%+=/-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);
  const words = [
    'wirewatch',
    'capture',
    verb,
    '-l',
    // -l as the user typed it; when it was a default, the watcher's own location.
    location ?? ref.watcher.location,
    '-n',
    ref.name,
    ...(options.subscription === undefined ? [] : ['--subscription', options.subscription]),
    ...(options.profile === undefined ? [] : ['--profile', options.profile]),
  ];
  return words.map(quote).join(' ');
}

/**
 * Runs a wait; Ctrl-C during it ends the live line, says on stderr what goes on without the
 * CLI (`notice`, e.g. that the capture keeps running and how to stop it) and exits 130 as a
 * shell does for an interrupted command. Nothing on the server is changed by the interrupt.
 */
export async function interruptible<T>(
  live: LiveLine,
  notice: string,
  wait: () => Promise<T>,
): Promise<T> {
  const onInterrupt = () => {
    live.clear();
    process.stderr.write(`${notice}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    return await wait();
  } finally {
    process.off('SIGINT', onInterrupt);
    live.clear();
  }
}

/** How often --wait and `capture wait` ask; the server's Retry-After is 1 s. */
export const POLL_INTERVAL_MS = 1000;

export async function queryStatus(client: ApiClient, ref: CaptureRef): Promise<CaptureStatus> {
  return (await client.request('POST', `${ref.path}/queryStatus`)).body as CaptureStatus;
}

/** The live line: status, elapsed time, packets, bytes, kernel drops (and the upload). */
export function statusLine(s: CaptureStatus, now = Date.now()): string {
  const start = s.captureStartTime ? Date.parse(s.captureStartTime) : undefined;
  const end = s.captureStopTime ? Date.parse(s.captureStopTime) : now;
  const elapsed = start === undefined ? '' : `  ${formatDuration(Math.max(0, end - start))}`;
  const upload = s.uploadState ? `  upload ${s.uploadState}` : '';
  return `${s.name}: ${s.packetCaptureStatus}${elapsed}  packets ${s.packetsCaptured}  ${formatBytes(s.bytesCaptured)}  drops ${s.packetsDropped}${upload}`;
}

/**
 * One rewritten line on stderr, only when stderr is a terminal: in a pipe or a log nothing is
 * written, so that scripts see only the result (stdout) and real errors (stderr).
 */
export class LiveLine {
  readonly #enabled: boolean;
  #shown = false;

  constructor(enabled = process.stderr.isTTY === true) {
    this.#enabled = enabled;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  show(text: string): void {
    if (!this.#enabled) return;
    const width = process.stderr.columns > 1 ? process.stderr.columns - 1 : 200;
    process.stderr.write(`\r\x1b[K${text.slice(0, width)}`);
    this.#shown = true;
  }

  clear(): void {
    if (this.#shown) process.stderr.write('\r\x1b[K');
    this.#shown = false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Shows the capture's status on the live line; a failed read (a capture just deleted) is skipped. */
export async function showStatus(
  client: ApiClient,
  ref: CaptureRef,
  live: LiveLine,
): Promise<void> {
  if (!live.enabled) return;
  try {
    live.show(statusLine(await queryStatus(client, ref)));
  } catch (err) {
    if (!(err instanceof RefusedError)) throw err;
  }
}

/** GET a polling URL the server gave, on the profile's server (the token goes nowhere else). */
function poll(client: ApiClient, link: string) {
  const { path, query } = onServer(link);
  return client.request('GET', path, { query });
}

/**
 * Waits for a long-running operation: `Azure-AsyncOperation` (a status body: InProgress,
 * Succeeded, Failed with the error) or `Location` (202 while running, then the final answer).
 * A failed operation throws RefusedError with its code. The live line shows the capture.
 */
export async function waitForOperation(
  client: ApiClient,
  ref: CaptureRef,
  operation: { readonly kind: 'Azure-AsyncOperation' | 'Location'; readonly url: string },
  live: LiveLine,
): Promise<void> {
  for (;;) {
    const { status, body } = await poll(client, operation.url);
    if (operation.kind === 'Location') {
      if (status !== 202) return;
    } else {
      const op = body as { status?: string; error?: { code?: string; message?: string } };
      if (op.status === 'Succeeded') return;
      if (op.status === 'Failed') {
        throw new RefusedError(
          500,
          op.error?.code ?? 'OperationFailed',
          op.error?.message ?? `the operation on packet capture '${ref.name}' failed`,
        );
      }
    }
    await showStatus(client, ref, live);
    await sleep(POLL_INTERVAL_MS);
  }
}

/** The polling URL of a create, stop or delete answer, if it has one. */
export function operationOf(headers: Record<string, string | string[] | undefined>):
  | {
      kind: 'Azure-AsyncOperation' | 'Location';
      url: string;
    }
  | undefined {
  const async = headers['azure-asyncoperation'];
  if (typeof async === 'string') return { kind: 'Azure-AsyncOperation', url: async };
  const location = headers['location'];
  if (typeof location === 'string') return { kind: 'Location', url: location };
  return undefined;
}

/** Polls queryStatus until `done` holds, showing the live line; returns the last status. */
export async function waitForStatus(
  client: ApiClient,
  ref: CaptureRef,
  done: (s: CaptureStatus) => boolean,
  live: LiveLine,
  deadline = Infinity,
): Promise<CaptureStatus | undefined> {
  for (;;) {
    const status = await queryStatus(client, ref);
    live.show(statusLine(status));
    if (done(status)) return status;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    await sleep(Math.min(POLL_INTERVAL_MS, left));
  }
}

/** A capture that ended in Error, as a failure with its first error's code and message. */
export function refusalOf(s: CaptureStatus): RefusedError {
  const detail = s.packetCaptureErrorDetails[0];
  return new RefusedError(
    500,
    detail?.code ?? s.packetCaptureError[0] ?? 'CaptureFailed',
    detail?.message ?? `packet capture '${s.name}' ended in Error`,
  );
}
