/**
 * Downloading a capture: `GET {capture}/content` (docs/api.md "Downloading a capture").
 *
 * The bytes come from blob storage when the capture's upload completed, otherwise from the
 * agent's local file(s) through the agent channel (capture-content-sources.ts). One file is
 * served as it is, with HTTP Range; several (a ring) as one pcap merged by time, or as a tar of
 * the files with `?format=tar`; `?format=pcapng` makes one pcapng file with an interface named
 * after the VM. Every download is audited.
 */
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { isActive } from '../../control/control-plane.js';
import { captureResourceId } from '../../control/resource-ids.js';
import { WirewatchError } from '../../model/errors.js';
import { parseResourceId } from '../../model/resource-id.js';
import { mergePcapStreams, type PcapStreamInput } from '../../pcap/merge-streams.js';
import type { SessionRecord } from '../../store/store.js';
import { auditRequest, type ServerContext } from '../context.js';
import { authorizeCapture, CAPTURE_ROUTE, type CaptureParams } from './capture-route.js';
import { instancesContent, isScaleSetCapture } from './capture-instances.js';
import {
  sequentialFiles,
  sessionSource,
  sizesOf,
  type ContentSource,
} from './capture-content-sources.js';
import { createTarStream, MAX_TAR_NAME_BYTES, tarSize, type TarEntry } from '../tar.js';

const CONTENT = `${CAPTURE_ROUTE}/content`;

const PCAP_TYPE = 'application/vnd.tcpdump.pcap';
const PCAPNG_TYPE = 'application/x-pcapng';
const TAR_TYPE = 'application/x-tar';
/** The instances of a scale set's capture that have no file and are not in the download. */
const SKIPPED_HEADER = 'wirewatch-skipped-instances';

type Format = 'pcap' | 'pcapng' | 'tar';

/** A byte range of the one file, inclusive, as the Range header asked. */
type RangeAnswer =
  | { readonly kind: 'whole' }
  | { readonly kind: 'part'; readonly start: number; readonly end: number }
  | { readonly kind: 'unsatisfiable' };

export const captureContentRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { control } = ctx;

  // A download's headers are on the raw response once its stream is handed over, and stay
  // there if the stream fails before its first byte: the error answer must not say it is an
  // attachment or a part. The app's handler then answers.
  app.setErrorHandler((err, _request, reply) => {
    const code = err instanceof WirewatchError ? err.code : undefined;
    // The file's type too: the error body is JSON (a merge that fails before its first byte
    // fails the stream after the type was set).
    const stale = ['content-disposition', 'content-type'];
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
    const scaleSet = isScaleSetCapture(session);
    const format = formatOf(request.query['format'], scaleSet);
    if (isActive(session.status)) {
      throw new WirewatchError(
        'CaptureStillRunning',
        `Packet capture '${session.name}' is ${session.status}; it can be downloaded once it has stopped`,
        { target: 'packetCaptureName' },
      );
    }
    const plan = scaleSet ? await instancesPlan(session, ctx) : await vmPlan(session, ctx);
    const files = plan.parts.reduce((n, p) => n + p.source.names.length, 0);
    if (files === 0) {
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
        detail: {
          source: sourceKindOf(plan),
          format,
          range,
          files,
          ...(scaleSet ? { instances: plan.parts.length, skipped: plan.skipped } : {}),
        },
      });
    };
    reply.header('cache-control', 'private, no-store');
    if (plan.skipped.length > 0) reply.header(SKIPPED_HEADER, plan.skipped.join(','));

    if (format === 'tar') {
      const entries = await tarEntries(plan, session);
      attachment(reply, TAR_TYPE, `${session.name}.tar`, 'none');
      reply.header('content-length', String(tarSize(entries)));
      if (head) return reply.send();
      await audit(null);
      return reply.send(createTarStream(entries));
    }

    const single = scaleSet ? undefined : plan.parts[0]!.source;
    if (format === 'pcapng' || single === undefined) {
      // One interface per host, each host's files read one after the other.
      attachment(
        reply,
        format === 'pcapng' ? PCAPNG_TYPE : PCAP_TYPE,
        fileName(session, format),
        'none',
      );
      if (head) return reply.send();
      const inputs = await openedHosts(plan);
      await audit(null);
      return reply.send(mergedStream(inputs, request, format));
    }

    if (single.names.length > 1) {
      // Merged on the fly: its length is not known before the end, and Range is not served.
      attachment(reply, PCAP_TYPE, fileName(session, format), 'none');
      if (head) return reply.send();
      const inputs = await openedFiles(single);
      await audit(null);
      return reply.send(mergedStream(inputs, request, format));
    }

    const size = await single.size(0);
    const range = rangeOf(request.headers.range, size);
    attachment(reply, PCAP_TYPE, fileName(session, format), 'bytes');
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
      return reply.send(await single.open(0));
    }
    const length = range.end - range.start + 1;
    reply
      .code(206)
      .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
      .header('content-length', String(length));
    if (head) return reply.send();
    await audit(`bytes=${range.start}-${range.end}`);
    return reply.send(await single.open(0, { offset: range.start, length }));
  };

  // HEAD answers the GET's headers without reading any file (Fastify's automatic HEAD would
  // read the whole stream and drop it).
  app.get(CONTENT, { exposeHeadRoute: false }, download);
  app.head(CONTENT, download);
};

/** `?format=`: pcapng by default for a scale set (one interface per instance), else pcap. */
function formatOf(raw: unknown, scaleSet: boolean): Format {
  if (raw === undefined) return scaleSet ? 'pcapng' : 'pcap';
  if (raw === 'pcap' || raw === 'pcapng' || raw === 'tar') return raw;
  throw new WirewatchError(
    'InvalidRequestContent',
    `format: ${JSON.stringify(raw)} is not a download format; use ${scaleSet ? 'pcapng (default), pcap' : 'pcap (default), pcapng'} or tar`,
    { target: 'format' },
  );
}

function fileName(session: SessionRecord, format: Format): string {
  return `${session.name}.${format === 'pcap' ? 'cap' : format}`;
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

/** What a download reads: one part per host. */
interface ContentPlan {
  readonly parts: readonly ContentPart[];
  /** A scale set's instances without a file, named in {@link SKIPPED_HEADER}. */
  readonly skipped: readonly string[];
}

/** One host's capture files. */
interface ContentPart {
  /** The host's name: a pcapng interface's `if_name`. */
  readonly host: string;
  /** A tar's folder for the host's files; none for a single VM's capture. */
  readonly folder?: string;
  readonly source: ContentSource;
}

/** A single VM's capture: one part, named after the VM (its target's last segment). */
async function vmPlan(session: SessionRecord, ctx: ServerContext): Promise<ContentPlan> {
  const target = session.capture.target.id;
  const host =
    parseResourceId(target, 'Microsoft.Compute/virtualMachines')?.name ??
    target.split('/').filter(Boolean).at(-1) ??
    session.name;
  const source = await sessionSource(session, ctx, session.files.length);
  return { parts: [{ host, source }], skipped: [] };
}

/** A scale set's capture: a part per instance with files, each in a tar folder `{ss}_{id}`. */
async function instancesPlan(parent: SessionRecord, ctx: ServerContext): Promise<ContentPlan> {
  const { parts, skipped } = await instancesContent(parent, ctx);
  return { parts: parts.map((p) => ({ ...p, folder: p.host })), skipped };
}

function sourceKindOf(plan: ContentPlan): string {
  const kinds = [...new Set(plan.parts.map((p) => p.source.kind))].sort();
  return kinds.join('+');
}

/** The tar's entries: each part's files, in its folder if it has one. */
async function tarEntries(plan: ContentPlan, session: SessionRecord): Promise<TarEntry[]> {
  const mtime = session.stopTime ?? session.updatedAt;
  const entries: TarEntry[] = [];
  for (const part of plan.parts) {
    const { source, folder } = part;
    const sizes = await sizesOf(source);
    const names =
      folder === undefined
        ? tarNames(source.names, session.name, MAX_TAR_NAME_BYTES)
        : tarNames(source.names, folder, MAX_TAR_NAME_BYTES - folder.length - 1).map(
            (n) => `${folder}/${n}`,
          );
    for (const [i, name] of names.entries()) {
      entries.push({ name, size: sizes[i]!, mtime, open: () => source.open(i) });
    }
  }
  return entries;
}

/** Entry names: the files' own names, unless one is too long for tar or names repeat. */
function tarNames(names: readonly string[], prefix: string, maxBytes: number): string[] {
  const fits = names.every((n) => Buffer.byteLength(n) <= maxBytes && !n.includes('/'));
  if (fits && new Set(names).size === names.length) return [...names];
  return names.map((n, i) => `${prefix}_${i + 1}${path.extname(n) || '.cap'}`);
}

/** Every file of a source opened at once, as merge inputs (a ring's files, merged by time). */
async function openedFiles(source: ContentSource): Promise<PcapStreamInput[]> {
  const opened = await Promise.allSettled(source.names.map((_, i) => source.open(i)));
  const streams = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o) => o.status === 'rejected');
  if (failed) {
    for (const stream of streams) stream.destroy();
    throw failed.reason;
  }
  return streams.map((stream, i) => ({ name: source.names[i]!, stream }));
}

/**
 * One merge input per host (its files one after the other), every host's first file opened at
 * once: if one fails, the others are closed and the download fails before its first byte.
 */
async function openedHosts(plan: ContentPlan): Promise<PcapStreamInput[]> {
  const opened = await Promise.allSettled(plan.parts.map((p) => sequentialFiles(p.source)));
  const failed = opened.find((o) => o.status === 'rejected');
  if (failed) {
    for (const o of opened) {
      if (o.status === 'fulfilled') o.value.cancel();
    }
    throw failed.reason;
  }
  return opened.map((o, i) => ({
    name: plan.parts[i]!.host,
    files: o.status === 'fulfilled' ? o.value.files : [],
  }));
}

/** The inputs merged by time into one stream of `format`, which fails if any input does. */
function mergedStream(
  inputs: readonly PcapStreamInput[],
  request: FastifyRequest,
  format: 'pcap' | 'pcapng',
): Readable {
  const output = new PassThrough();
  const abort = new AbortController();
  output.once('close', () => abort.abort());
  // A failed merge closes its inputs and fails `output` with the error (Fastify answers it
  // when no byte was sent yet, and cuts the response otherwise).
  mergePcapStreams(inputs, output, {
    signal: abort.signal,
    format,
    linkTypeMismatch: (m) =>
      new WirewatchError(
        'InvalidRequestContent',
        `format: pcap needs one link type, but ${m.input} has link type ${m.linkType} and ${m.first} has ${m.firstLinkType}; use format=pcapng or tar`,
        { target: 'format' },
      ),
  }).catch((err: unknown) => {
    if (!abort.signal.aborted) request.log.warn({ err }, 'merged download failed');
  });
  return output;
}
