/**
 * Where a download's bytes come from (src/server/routes/capture-content.ts): one capture
 * session's files, from blob storage when its upload completed (read with the account key, which
 * never leaves the server), otherwise from its agent through the channel. A scale-set capture
 * reads one such source per instance (capture-content-instances.ts).
 */
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { StorageAccountClient } from '../../blob/storage-account.js';
import type { ControlPlane } from '../../control/control-plane.js';
import { WirewatchError } from '../../model/errors.js';
import type { SessionRecord } from '../../store/store.js';
import type { AgentHub } from '../agent-hub.js';

/**
 * A merge reads every file at once (or, for the instances of a scale set, one file per instance
 * at a time), and each of its streams from an agent holds up to about three windows: windows
 * shrink with the number of streams (256 KiB for up to 128, down to 16 KiB), so a merge holds at
 * most about 100 MiB up to 2,000 streams, and 48 KiB per stream beyond.
 */
const MERGE_BUDGET_BYTES = 32 * 1024 * 1024;
/** Size queries in flight at once for a tar (each opens the file on the agent). */
const SIZE_QUERIES_AT_ONCE = 16;

/** Where a capture's files are read from; files in the order the capture wrote them. */
export interface ContentSource {
  readonly kind: 'blob' | 'agent';
  /** Each file's name (for tar entries). */
  readonly names: readonly string[];
  size(index: number): Promise<number>;
  /** The file's bytes, or `length` of them from `offset`. */
  open(index: number, range?: { offset: number; length: number }): Promise<Readable>;
}

/** What {@link sessionSource} needs of the server. */
export interface SourceContext {
  readonly control: ControlPlane;
  readonly hub: AgentHub;
}

/**
 * The session's files: its blobs when the upload completed, else its agent's files.
 *
 * @param mergedStreams - how many agent streams a merge will read at once (windows shrink to
 *   fit {@link MERGE_BUDGET_BYTES}); 1 or absent for a download of one file at a time.
 * @throws WirewatchError `AgentNotConnected` when the files are only on a VM whose agent is
 *   away; `CaptureFileUnavailable` when the storage account is no longer registered.
 */
export async function sessionSource(
  session: SessionRecord,
  ctx: SourceContext,
  mergedStreams = 1,
): Promise<ContentSource> {
  const upload = session.upload;
  if (upload?.state === 'Completed' && upload.blobs.length > 0) {
    return blobSource(session, upload.blobs, ctx.control);
  }
  const { hub } = ctx;
  if (!hub.isConnected(session.vmId)) {
    throw new WirewatchError(
      'AgentNotConnected',
      `The capture '${session.name}' is only on its VM, and the VM's agent is not connected; retry when it is`,
    );
  }
  const files = session.files;
  const ref = (i: number) => ({ sessionId: session.id, path: files[i]! });
  return {
    kind: 'agent',
    names: files.map((f) => path.basename(f)),
    size: (i) => hub.files.size(session.vmId, ref(i)),
    open: async (i, range) =>
      hub.files.open(session.vmId, {
        ...ref(i),
        offset: range?.offset ?? 0,
        ...(range === undefined ? {} : { length: range.length }),
        ...(mergedStreams > 1 ? { windowBytes: mergeWindow(mergedStreams) } : {}),
      }),
  };
}

function mergeWindow(streams: number): number {
  return Math.max(16 * 1024, Math.min(256 * 1024, Math.floor(MERGE_BUDGET_BYTES / streams)));
}

/** Every file's size, asked SIZE_QUERIES_AT_ONCE at a time. */
export async function sizesOf(source: ContentSource): Promise<number[]> {
  const sizes: number[] = [];
  for (let i = 0; i < source.names.length; i += SIZE_QUERIES_AT_ONCE) {
    const batch = source.names.slice(i, i + SIZE_QUERIES_AT_ONCE);
    sizes.push(...(await Promise.all(batch.map((_, j) => source.size(i + j)))));
  }
  return sizes;
}

/**
 * The source's files read one after the other, each opened when the one before has ended: a
 * ring read as one input of a merge (`PcapStreamInput.files`), holding one file open at a time.
 * The first file is opened here, so that a file that cannot be read fails before a byte is sent.
 */
export async function sequentialFiles(source: ContentSource): Promise<SequentialFiles> {
  const first = await source.open(0);
  return {
    files: source.names.map((_, i) =>
      i === 0 ? () => first : () => openLazily(() => source.open(i)),
    ),
    cancel: () => first.destroy(),
  };
}

/** What {@link sequentialFiles} opened. */
export interface SequentialFiles {
  readonly files: readonly (() => AsyncIterable<Buffer>)[];
  /** Closes the first file, when the merge that was to read it will not run. */
  cancel(): void;
}

async function* openLazily(open: () => Promise<Readable>): AsyncGenerator<Buffer> {
  const stream = await open();
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
  } finally {
    stream.destroy();
  }
}

async function blobSource(
  session: SessionRecord,
  blobs: readonly { url: string; size: number }[],
  control: ControlPlane,
): Promise<ContentSource> {
  const account = await control.captureStorageAccount(session);
  if (!account) {
    throw new WirewatchError(
      'CaptureFileUnavailable',
      `The capture '${session.name}' is in a storage account that is no longer registered`,
    );
  }
  const client = new StorageAccountClient(account.connectionString);
  const names = blobs.map((b) => client.blobNameOfUrl(b.url));
  return {
    kind: 'blob',
    names: names.map((n, i) => path.posix.basename(n ?? blobs[i]!.url)),
    size: async (i) => blobs[i]!.size,
    open: async (i, range) => {
      const name = names[i];
      if (name === undefined) {
        throw new WirewatchError(
          'CaptureFileUnavailable',
          `The blob of capture '${session.name}' is not in storage account '${account.name}'`,
        );
      }
      if (range?.length === 0) return new PassThrough().end();
      try {
        const blob = await client.download(
          name,
          range === undefined ? undefined : { offset: range.offset, count: range.length },
        );
        return blob.stream as Readable;
      } catch (err) {
        throw blobError(err, session, account.name);
      }
    },
  };
}

function blobError(err: unknown, session: SessionRecord, accountName: string): unknown {
  if (!(err instanceof WirewatchError)) return err;
  if (err.code === 'ResourceNotFound') {
    return new WirewatchError(
      'CaptureFileGone',
      `The blob of capture '${session.name}' no longer exists in storage account '${accountName}'`,
      { cause: err },
    );
  }
  // Unreachable, refused key: the account's trouble, which the server reports as a gateway.
  return new WirewatchError('CaptureFileUnavailable', err.message, { cause: err });
}
