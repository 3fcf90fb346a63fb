/**
 * A packet capture as `capture show`, `list` and `create` print it: Azure's PacketCaptureResult
 * with wirewatch's `$expand=status`, and the table's columns.
 */
import { limitValue, ringDurationSeconds } from '../model/capture-limits.js';
import type { ApiClient } from './api-client.js';
import type { CaptureRef } from './capture-ref.js';
import { stateOf, type CaptureStatus } from './capture-status.js';
import type { Column } from './output.js';

/** Azure's PacketCaptureResult (the fields the table shows), with `$expand=status`. */
export interface CaptureView {
  readonly name: string;
  readonly id: string;
  readonly properties: {
    readonly provisioningState?: string;
    readonly target?: string;
    readonly targetType?: string;
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
export const CAPTURE_COLUMNS: readonly Column<CaptureView>[] = [
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

/**
 * The time limit that ends the capture: for a continuous one the earlier of its session limit and
 * an explicit timeLimitInSeconds (the server echoes the latter only when it was given); 0 reads
 * as the largest limit, as the server applies it (the model's rules, src/model/capture-limits.ts).
 * Undefined when the capture shows neither.
 */
function timeLimitOf(p: CaptureView['properties']): number | undefined {
  const time =
    p.timeLimitInSeconds === undefined
      ? undefined
      : limitValue('timeLimitInSeconds', p.timeLimitInSeconds);
  const session =
    p.continuousCapture === true ? p.captureSettings?.sessionTimeLimitInSeconds : undefined;
  if (session === undefined) return time;
  return ringDurationSeconds(
    { sessionTimeLimitInSeconds: limitValue('sessionTimeLimitInSeconds', session) },
    time,
  );
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

/** The capture with its status (`$expand=status`), as show, list and create print it. */
export async function getCapture(client: ApiClient, ref: CaptureRef): Promise<CaptureView> {
  return client.get<CaptureView>(ref.path, { $expand: 'status' });
}
