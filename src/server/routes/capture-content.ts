/**
 * Downloading a capture: `GET {capture}/content` (docs/api.md "Downloading a capture").
 *
 * The bytes come from blob storage when the capture's upload completed (the server reads with
 * the account key, which never leaves it), otherwise from the agent's local file(s) through the
 * agent channel. One file is served as it is, with HTTP Range; several (a ring) as one pcap
 * merged by time, or as a tar of the files with `?format=tar`. Every download is audited.
 */
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { StorageAccountClient } from '../../blob/storage-account.js';
import { isActive, type ControlPlane } from '../../control/control-plane.js';
import { captureResourceId } from '../../control/resource-ids.js';
import { WirewatchError } from '../../model/errors.js';
import { mergePcapStreams } from '../../pcap/merge-streams.js';
import type { SessionRecord } from '../../store/store.js';
import type { AgentHub } from '../agent-hub.js';
import { auditRequest, type ServerContext } from '../context.js';
import { authorizeCapture, CAPTURE_ROUTE, type CaptureParams } from './capture-route.js';
import { createTarStream, MAX_TAR_NAME_BYTES, tarSize, type TarEntry } from '../tar.js';

const CONTENT = `${CAPTURE_ROUTE}/content`;

const PCAP_TYPE = 'application/vnd.tcpdump.pcap';
const TAR_TYPE = 'application/x-tar';
/**
 * A merge reads every file at once, and each of its streams holds up to about three windows:
 * windows shrink with the number of files (256 KiB for up to 128 files, down to 16 KiB), so a
 * merge holds at most about 100 MiB up to 2,000 files, and 48 KiB per file beyond.
 */
const MERGE_BUDGET_BYTES = 32 * 1024 * 1024;
/** Size queries in flight at once for a tar (each opens the file on the agent). */
const SIZE_QUERIES_AT_ONCE = 16;

type Format = 'pcap' | 'tar';

/** Where a capture's files are read from; files in the order the capture wrote them. */
interface ContentSource {
  readonly kind: 'blob' | 'agent';
  /** Each file's name (for tar entries). */
  readonly names: readonly string[];
  size(index: number): Promise<number>;
  /** The file's bytes, or `length` of them from `offset`. */
  open(index: number, range?: { offset: number; length: number }): Promise<Readable>;
}

/** A byte range of the one file, inclusive, as the Range header asked. */
type RangeAnswer =
  | { readonly kind: 'whole' }
  | { readonly kind: 'part'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

export const captureContentRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { control, hub } = ctx;

  // A download's headers are on the raw response once its stream is handed over, and stay
  // there if the stream fails before its first byte: the error answer must not say it is an
  // attachment or a part. The app's handler then answers.
  app.setErrorHandler((err, _request, reply) => {
    const code = err instanceof WirewatchError ? err.code : undefined;
    const stale = ['content-disposition'];
    if (code !== 'RangeNotSatisfiable') stale.push('content-range');
    for (const name of stale) {
      reply.removeHeader(name);
      reply.raw.removeHeader(name);
    }
    // Whenever the agent is away (before the download or as it began), say when to come back.
    if (code === 'AgentNotConnected') reply.header('retry-after', '30');
    throw err;
  });

  const download = async (
    request: FastifyRequest<{ Params: CaptureParams; Querystring: Record<string, unknown> }>,
    reply: FastifyReply,
  ) => {
    const params = request.params;
    const ref = await authorizeCapture(ctx, request, params, 'Reader');
    const session = await control.getCapture(ref);
    const format = formatOf(request.query['format']);
    if (isActive(session.status)) {
      throw new WirewatchError(
        'CaptureStillRunning',
        `Packet capture '${session.name}' is ${session.status}; it can be downloaded once it has stopped`,
        { target: 'packetCaptureName' },
      );
    }
    const source = await sourceOf(session, control, hub);
    if (source.names.length === 0) {
      throw new WirewatchError(
        'CaptureFileGone',
        `Packet capture '${session.name}' ended without a capture file`,
        { target: 'packetCaptureName' },
      );
    }
    const head = request.method === 'HEAD';
    // Only what is served is a download: HEAD, refusals and 416 read no bytes.
    const audit = async (range: string | null) => {
      if (head) return;
      await auditRequest(control, request, {
        subscriptionId: session.subscriptionId,
        action: 'packetCapture.download',
        resourceId: captureResourceId(
          session.subscriptionId,
          session.resourceGroup,
          session.watcherName,
          session.name,
        ),
        detail: { source: source.kind, format, range, files: source.names.length },
      });
    };
    reply.header('cache-control', 'private, no-store');

    if (format === 'tar') {
      const sizes = await sizesOf(source);
      const names = tarNames(source.names, session.name);
      const mtime = session.stopTime ?? session.updatedAt;
      const entries: TarEntry[] = names.map((name, i) => ({
        name,
        size: sizes[i]!,
        mtime,
        open: () => source.open(i),
      }));
      attachment(reply, TAR_TYPE, `${session.name}.tar`, 'none');
      reply.header('content-length', String(tarSize(entries)));
      if (head) return reply.send();
      await audit(null);
      return reply.send(createTarStream(entries));
    }

    if (source.names.length > 1) {
      // Merged on the fly: its length is not known before the end, and Range is not served.
      attachment(reply, PCAP_TYPE, `${session.name}.cap`, 'none');
      if (head) return reply.send();
      await audit(null);
      return reply.send(await mergedStream(source, request));
    }

    const size = await source.size(0);
    const range = rangeOf(request.headers.range, size);
    attachment(reply, PCAP_TYPE, `${session.name}.cap`, 'bytes');
    if (range.kind === 'unsatisfiable') {
      reply.header('content-range', `bytes */${size}`);
      throw new WirewatchError(
        'RangeNotSatisfiable',
        `Range ${JSON.stringify(request.headers.range)} lies outside the file's ${size} bytes`,
        { target: 'Range' },
      );
    }
    if (range.kind === 'whole') {
      reply.header('content-length', String(size));
      if (head) return reply.send();
      await audit(null);
      return reply.send(await source.open(0));
    }
    const length = range.end - range.start + 1;
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
      .header('content-length', String(length));
    if (head) return reply.send();
    await audit(`bytes=${range.start}-${range.end}`);
    return reply.send(await source.open(0, { offset: range.start, length }));
  };

  // HEAD answers the GET's headers without reading any file (Fastify's automatic HEAD would
  // read the whole stream and drop it).
  app.get(CONTENT, { exposeHeadRoute: false }, download);
  app.head(CONTENT, download);
};

function formatOf(raw: unknown): Format {
  if (raw === undefined || raw === 'pcap') return 'pcap';
  if (raw === 'tar') return 'tar';
  throw new WirewatchError(
    'InvalidRequestContent',
    `format: ${JSON.stringify(raw)} is not a download format; use pcap (default) or tar`,
    { target: 'format' },
  );
}

function attachment(
  reply: FastifyReply,
  type: string,
  filename: string,
  ranges: 'bytes' | 'none',
): void {
  // Capture names are letters, digits, '_', '.' and '-': safe inside the quotes.
  reply
    .type(type)
    .header('content-disposition', `attachment; filename="${filename}"`)
    .header('accept-ranges', ranges);
}

/**
 * One `bytes=` range (RFC 9110 §14.1.2): `a-b`, `a-` or `-n`. A header that is not one valid
 * range (several ranges, another unit, bad syntax) is ignored and the whole file is served,
 * as the RFC allows.
 */
function rangeOf(header: string | undefined, size: number): RangeAnswer {
  const m = header === undefined ? null : /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return { kind: 'whole' };
  const [, first = '', last = ''] = m;
  if (first === '' && last === '') return { kind: 'whole' };
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'part', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return { kind: 'whole' };
  if (start >= size) return { kind: 'unsatisfiable' };
  return { kind: 'part', start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

/** Every file's size, asked SIZE_QUERIES_AT_ONCE at a time. */
async function sizesOf(source: ContentSource): Promise<number[]> {
  const sizes: number[] = [];
  for (let i = 0; i < source.names.length; i += SIZE_QUERIES_AT_ONCE) {
    const batch = source.names.slice(i, i + SIZE_QUERIES_AT_ONCE);
    sizes.push(...(await Promise.all(batch.map((_, j) => source.size(i + j)))));
  }
  return sizes;
}

/** Entry names: the files' own names, unless one is too long for tar or names repeat. */
function tarNames(names: readonly string[], captureName: string): string[] {
  const fits = names.every((n) => Buffer.byteLength(n) <= MAX_TAR_NAME_BYTES && !n.includes('/'));
  if (fits && new Set(names).size === names.length) return [...names];
  return names.map((n, i) => `${captureName}_${i + 1}${path.extname(n) || '.cap'}`);
}

/** The files merged by time into one pcap stream, which fails if any input does. */
async function mergedStream(source: ContentSource, request: FastifyRequest): Promise<Readable> {
  const opened = await Promise.allSettled(source.names.map((_, i) => source.open(i)));
  const streams = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o) => o.status === 'rejected');
  if (failed) {
    for (const stream of streams) stream.destroy();
    throw failed.reason;
  }
  const inputs = streams.map((stream, i) => ({ name: source.names[i]!, stream }));
  const output = new PassThrough();
  const abort = new AbortController();
  output.once('close', () => abort.abort());
  // A failed merge closes its inputs and fails `output` with the error (Fastify answers it
  // when no byte was sent yet, and cuts the response otherwise).
  mergePcapStreams(inputs, output, { signal: abort.signal }).catch((err: unknown) => {
    if (!abort.signal.aborted) request.log.warn({ err }, 'merged download failed');
  });
  return output;
}

async function sourceOf(
  session: SessionRecord,
  control: ControlPlane,
  hub: AgentHub,
): Promise<ContentSource> {
  const upload = session.upload;
  if (upload?.state === 'Completed' && upload.blobs.length > 0) {
    return blobSource(session, upload.blobs, control);
  }
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
        ...(files.length > 1 ? { windowBytes: mergeWindow(files.length) } : {}),
      }),
  };
}

function mergeWindow(files: number): number {
  return Math.max(16 * 1024, Math.min(256 * 1024, Math.floor(MERGE_BUDGET_BYTES / files)));
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
