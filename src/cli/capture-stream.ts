/**
 * `wirewatch capture stream`: a running capture's packets as a live pcap stream on stdout, for
 * `| tcpdump -r -` or `| wireshark -k -i -`, over the server's WebSocket `{capture}/stream`
 * (docs/api.md "Live stream"). A scale set's capture comes as one pcapng stream with an
 * interface per instance; the bytes are copied as they come either way.
 *
 * stdout's back-pressure reaches the server: when stdout takes no more, the socket is paused,
 * so a slow reader makes the server drop packets for this viewer (the stored capture loses
 * none). What was dropped, and how far behind the stream is, goes to stderr: a live line on a
 * terminal; in a pipe or a log a line only when drops or lag change (at most every few
 * seconds), and always a final summary.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import WebSocket, { type RawData } from 'ws';
import { errorCodes, type ErrorCode } from '../model/errors.js';
import { FILE_HEADER_LENGTH, parseFileHeader, PCAPNG_MAGIC } from '../pcap/format.js';
import {
  BLOCK_ENHANCED_PACKET as PCAPNG_ENHANCED_PACKET,
  BYTE_ORDER_MAGIC as PCAPNG_BYTE_ORDER_MAGIC,
} from '../pcap/pcapng-format.js';
import { countWholeRecords } from '../pcap/record-walker.js';
import type { ByteOrder } from '../pcap/types.js';
import { readRefusal } from './api-client.js';
import { apiCommand, withClient, type GlobalOptions } from './cli-context.js';
import {
  RefusedError,
  refuseTerminalStdout,
  unreachableOf,
  UnreachableError,
  UsageError,
} from './cli-errors.js';
import { captureRefOf, LOCATION_HELP } from './capture-ref.js';
import { LiveLine } from './capture-status.js';

interface StreamOptions extends GlobalOptions {
  readonly location?: string;
  readonly name?: string;
}

/** The stream's text frames (the server's `stats` about every second, `end` last). */
type StreamEvent =
  | { type: 'stats'; packets: number; dropped: number; lagMs: number }
  | {
      type: 'end';
      packets: number;
      dropped: number;
      error?: { code: string; message: string };
    };

/** In a pipe, at most one progress line this often (and only when drops or lag changed). */
const QUIET_LINE_MS = 5000;
const HANDSHAKE_TIMEOUT_MS = 15_000;

/** `wirewatch capture stream -l LOCATION -n NAME` (NAME may also come positionally). */
export function captureStreamCommand(): Command {
  return apiCommand('stream', { output: false })
    .description("write a running capture's packets to stdout as a live pcap stream")
    .argument('[name]', 'name of the packet capture (instead of -n)')
    .option('-l, --location <location>', LOCATION_HELP)
    .option('-n, --name <name>', 'name of the packet capture')
    .addHelpText(
      'after',
      `
Packets captured from the moment the stream starts; it ends by itself when the capture stops.
A scale set's capture streams every instance at once as pcapng, one interface per instance
({ss}_{id}: Wireshark's frame.interface_name), instances that join later included.
stdout carries the pcap bytes only (no -o/--output). Drops (for this viewer only; the stored
capture keeps every packet) and lag go to stderr; the last stderr line is the summary, also
when the reader quits first.

Examples:
  wirewatch capture stream -l westeurope -n https1 | tcpdump -n -r -
  wirewatch capture stream -l westeurope -n https1 | wireshark -k -i -
  wirewatch capture stream -l westeurope -n web-all | tshark -i - -T fields -e frame.interface_name
`,
    )
    .action(async (positional: string | undefined, _opts: unknown, command: Command) => {
      const o = command.opts<StreamOptions>();
      if (positional !== undefined && o.name !== undefined && positional !== o.name) {
        throw new UsageError(`give the capture's name once: ${positional} or --name ${o.name}`);
      }
      const name = o.name ?? positional;
      if (name === undefined) throw new UsageError('-n/--name (or NAME) is required');
      refuseTerminalStdout();
      await withClient(command, async ({ client }) => {
        const ref = await captureRefOf(client, o.location, name);
        const url = client.url(`${ref.path}/stream`);
        url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
        const ca = client.connection.ca;
        await runStream({
          url,
          token: client.connection.token,
          ...(ca === undefined ? {} : { ca: readFileSync(ca) }),
          name: ref.name,
          server: client.connection.server,
        });
      });
    });
}

interface RunStreamOptions {
  readonly url: URL;
  readonly token: string;
  readonly ca?: Buffer;
  /** The capture's name, for stderr. */
  readonly name: string;
  readonly server: string;
}

/** Opens the stream and copies it to stdout until it ends; throws a CliError when refused. */
function runStream(o: RunStreamOptions): Promise<void> {
  const out = process.stdout;
  const live = new LiveLine();
  const progress = new QuietProgress(live.enabled);
  return new Promise<void>((resolve, reject) => {
    let opened = false;
    let settled = false;
    let end: Extract<StreamEvent, { type: 'end' }> | undefined;
    let last: Extract<StreamEvent, { type: 'stats' }> = {
      type: 'stats',
      packets: 0,
      dropped: 0,
      lagMs: 0,
    };
    let readerGone = false;
    let interrupted = false;
    let paused = false;
    /** Packets written to stdout (the server's count arrives only every second). */
    const written = new RecordCounter();

    const socket = new WebSocket(o.url, {
      headers: { authorization: `Bearer ${o.token}` },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      perMessageDeflate: false,
      followRedirects: false,
      maxPayload: 16 * 1024 * 1024,
      ...(o.ca === undefined ? {} : { ca: o.ca }),
    });

    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      live.clear();
      if (opened) {
        const counts = end ?? { packets: written.records, dropped: last.dropped };
        const verb =
          end !== undefined
            ? 'ended'
            : readerGone
              ? 'closed by the reader'
              : interrupted
                ? 'stopped'
                : 'cut off';
        process.stderr.write(
          `stream ${verb}: ${counts.packets} packets, ${counts.dropped} dropped for this viewer\n`,
        );
      }
      if (error !== undefined) {
        reject(error);
        return;
      }
      // Everything written reaches the reader before the process ends.
      if (readerGone || out.writableLength === 0) resolve();
      else out.write('', () => resolve());
    };

    const onSignal = () => {
      interrupted = true;
      socket.close(1000, 'viewer stopped');
      setTimeout(() => socket.terminate(), 2000).unref();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    out.on('error', () => {
      // The reader went away (`| head`, tcpdump -c): not a failure of the stream. (main says
      // what a failure other than EPIPE was.)
      readerGone = true;
      socket.close(1000, 'reader gone');
      setTimeout(() => socket.terminate(), 2000).unref();
    });

    socket.on('unexpected-response', (_request, response) => {
      void readRefusal(response).then(
        (refused) => {
          socket.terminate();
          finish(refused);
        },
        (err: Error) => {
          socket.terminate();
          finish(new UnreachableError(`cannot read the server's answer: ${err.message}`));
        },
      );
    });
    socket.on('open', () => {
      opened = true;
    });
    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (isBinary) {
        if (readerGone) return;
        const frame = asBuffer(data);
        written.add(frame);
        if (!out.write(frame) && !paused) {
          // stdout is full: stop reading, so that the server drops for us rather than queue.
          paused = true;
          socket.pause();
          out.once('drain', () => {
            paused = false;
            socket.resume();
          });
        }
        return;
      }
      const event = parseEvent(asBuffer(data).toString('utf8'));
      if (event?.type === 'stats') {
        last = event;
        if (live.enabled) live.show(statsLine(o.name, event));
        else progress.maybeWrite(event);
      } else if (event?.type === 'end') {
        end = event;
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (settled || opened || interrupted) return;
      finish(unreachableOf(err, o.server, o.ca !== undefined));
    });
    socket.on('close', (code: number, reason: Buffer) => {
      if (settled) return;
      if (!opened) {
        if (interrupted) finish();
        else finish(new UnreachableError(`cannot open the stream on ${o.server}`));
        return;
      }
      if (end?.error !== undefined) {
        finish(new RefusedError(statusOf(end.error.code), end.error.code, end.error.message));
        return;
      }
      if (end !== undefined || readerGone || interrupted) {
        finish();
        return;
      }
      const why = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
      finish(new UnreachableError(`the stream was cut off (WebSocket close ${code}${why})`));
    });
  });
}

/** The stats line: packets, drops for this viewer, lag. */
function statsLine(name: string, s: { packets: number; dropped: number; lagMs: number }): string {
  return `${name}: ${s.packets} packets, ${s.dropped} dropped for this viewer, lag ${formatLag(s.lagMs)}`;
}

function formatLag(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * Progress lines for a stderr that is no terminal: quiet while nothing is dropped and the lag
 * stays under a second; otherwise a line when drops or lag (in whole seconds) change, at most
 * one every {@link QUIET_LINE_MS}.
 */
class QuietProgress {
  readonly #disabled: boolean;
  readonly #now: () => number;
  readonly #write: (line: string) => void;
  #dropped = 0;
  #lagSeconds = 0;
  #lastAt = -Infinity;

  constructor(
    disabled: boolean,
    now: () => number = Date.now,
    write: (line: string) => void = (line) => void process.stderr.write(line),
  ) {
    this.#disabled = disabled;
    this.#now = now;
    this.#write = write;
  }

  maybeWrite(s: { packets: number; dropped: number; lagMs: number }): void {
    if (this.#disabled) return;
    const lagSeconds = Math.floor(s.lagMs / 1000);
    if (s.dropped === this.#dropped && lagSeconds === this.#lagSeconds) return;
    const now = this.#now();
    if (now - this.#lastAt < QUIET_LINE_MS) return;
    this.#lastAt = now;
    this.#dropped = s.dropped;
    this.#lagSeconds = lagSeconds;
    this.#write(
      `stream: ${s.packets} packets, ${s.dropped} dropped for this viewer, lag ${formatLag(s.lagMs)}\n`,
    );
  }
}

/**
 * Counts the packets of the stream: a pcap stream (its header, then whole records), or a pcapng
 * one (a scale set's: whole blocks per frame, EPBs counted).
 */
class RecordCounter {
  records = 0;
  #byteOrder: ByteOrder | undefined;
  #pcapng = false;

  add(frame: Buffer): void {
    if (this.#byteOrder === undefined) {
      if (frame.length >= 12 && frame.readUInt32LE(0) === PCAPNG_MAGIC) {
        this.#pcapng = true;
        this.#byteOrder = frame.readUInt32LE(8) === PCAPNG_BYTE_ORDER_MAGIC ? 'LE' : 'BE';
      } else {
        if (frame.length < FILE_HEADER_LENGTH) return;
        try {
          this.#byteOrder = parseFileHeader(frame).byteOrder;
        } catch {
          return;
        }
        frame = frame.subarray(FILE_HEADER_LENGTH);
      }
    }
    this.records += this.#pcapng
      ? countBlocks(frame, this.#byteOrder, PCAPNG_ENHANCED_PACKET)
      : countWholeRecords(frame, this.#byteOrder);
  }
}

/** The whole pcapng blocks of `type` in a frame of whole blocks. */
function countBlocks(frame: Buffer, byteOrder: ByteOrder, type: number): number {
  const u32 = (at: number) =>
    byteOrder === 'LE' ? frame.readUInt32LE(at) : frame.readUInt32BE(at);
  let count = 0;
  for (let at = 0; at + 8 <= frame.length;) {
    const length = u32(at + 4);
    if (length < 12 || at + length > frame.length) break;
    if (u32(at) === type) count++;
    at += length;
  }
  return count;
}

function parseEvent(text: string): StreamEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const v = value as Partial<Record<string, unknown>> | null;
  if (v === null || typeof v !== 'object') return undefined;
  const count = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  if (v['type'] === 'stats') {
    return {
      type: 'stats',
      packets: count(v['packets']),
      dropped: count(v['dropped']),
      lagMs: count(v['lagMs']),
    };
  }
  if (v['type'] === 'end') {
    const error = v['error'] as { code?: unknown; message?: unknown } | undefined;
    return {
      type: 'end',
      packets: count(v['packets']),
      dropped: count(v['dropped']),
      ...(error !== undefined && typeof error.code === 'string'
        ? {
            error: {
              code: error.code,
              message: typeof error.message === 'string' ? error.message : error.code,
            },
          }
        : {}),
    };
  }
  return undefined;
}

function asBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return data;
}

/** The HTTP status a code of the registry stands for (the end of a stream carries no status). */
function statusOf(code: string): number {
  return code in errorCodes ? errorCodes[code as ErrorCode].status : 502;
}
