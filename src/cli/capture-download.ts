/**
 * `wirewatch capture download`: a stopped capture's bytes (`GET …/packetCaptures/{name}/content`)
 * into a file. The bytes go to FILE.part, renamed to FILE once complete; a FILE.part left by an
 * interrupted download is resumed with `Range: bytes=<size>-`.
 */
import { once } from 'node:events';
import { open, rename, stat, unlink } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { Option, type Command } from 'commander';
import { readRefusal, type ApiClient } from './api-client.js';
import { apiCommand, withClient, type GlobalOptions } from './cli-context.js';
import { refuseTerminalStdout, UnreachableError, UsageError } from './cli-errors.js';
import { captureRefOf, LOCATION_HELP, type CaptureRef } from './capture-ref.js';
import { formatBytes } from './format.js';
import { printResult, type Column } from './output.js';

type Format = 'pcap' | 'pcapng' | 'tar';

interface DownloadOptions extends GlobalOptions {
  readonly location?: string;
  readonly name?: string;
  readonly file?: string;
  readonly format?: Format;
}

/** Each format's file extension. */
const EXTENSIONS: Readonly<Record<Format, string>> = { pcap: 'cap', pcapng: 'pcapng', tar: 'tar' };

/** What `download` prints (unless the bytes themselves go to stdout). */
interface DownloadResult {
  readonly name: string;
  readonly file: string;
  readonly format: Format;
  /** The file's size. */
  readonly bytes: number;
  /** Bytes already in FILE.part that were kept (0: downloaded from the start). */
  readonly resumedFrom: number;
}

const COLUMNS: readonly Column<DownloadResult>[] = [
  { header: 'Name', get: (r) => r.name },
  { header: 'File', get: (r) => r.file },
  { header: 'Bytes', get: (r) => r.bytes, kind: 'bytes' },
  { header: 'ResumedFrom', get: (r) => r.resumedFrom, kind: 'bytes' },
];

export function captureDownloadCommand(): Command {
  return apiCommand('download')
    .description('download a stopped packet capture; resumes an interrupted download')
    .argument('[name]', 'name of the packet capture (or -n NAME)')
    .option('-l, --location <location>', LOCATION_HELP)
    .option('-n, --name <name>', 'name of the packet capture')
    .option(
      '-f, --file <path>',
      'file to write (default NAME.cap, NAME.pcapng or NAME.tar, after the format); - writes to stdout',
    )
    .addOption(
      new Option(
        '--format <format>',
        "pcap: one capture file (a ring's files merged by time); pcapng: one file with an interface per host (a scale set's instances); tar: the files as they are (default: pcapng for a scale set, else pcap)",
      ).choices(['pcapng', 'pcap', 'tar']),
    )
    .addHelpText(
      'after',
      `
Examples:
  wirewatch capture download -l westeurope -n https1 --file https1.cap
  wirewatch capture download https1 -l westeurope --file - | tshark -r -
  wirewatch capture download -l westeurope -n ring1 --format tar --file ring1.tar
  wirewatch capture download -l westeurope -n web-all --file - | tshark -r - -T fields -e frame.interface_name

-o is --output (json, table, tsv) as on every command; the capture file is --file.
Run the same command again after an interruption: it resumes from FILE.part.
`,
    )
    .action(async (positional: string | undefined, _opts: unknown, command: Command) => {
      const o = command.opts<DownloadOptions>();
      if (positional !== undefined && o.name !== undefined && positional !== o.name) {
        throw new UsageError(`two names: ${positional} and --name ${o.name}; give one`);
      }
      const name = positional ?? o.name;
      if (name === undefined) throw new UsageError('the capture name is required: NAME or -n NAME');
      if (o.file === '-') refuseTerminalStdout();
      await withClient(command, async ({ client, output }) => {
        const ref = await captureRefOf(client, o.location, name);
        const format = o.format ?? (await defaultFormat(client, ref));
        const file = o.file ?? `${name}.${EXTENSIONS[format]}`;
        if (file === '-') {
          await toStdout(client, ref, format);
          return;
        }
        const result = await toFile(client, ref, format, file);
        printResult(output, result, COLUMNS);
      });
    });
}

/** The server's default for the capture: pcapng for a scale set's (one interface per instance). */
async function defaultFormat(client: ApiClient, ref: CaptureRef): Promise<Format> {
  const capture = await client.get<{ properties?: { targetType?: string } }>(ref.path);
  return capture.properties?.targetType?.toLowerCase() === 'azurevmss' ? 'pcapng' : 'pcap';
}

function contentUrl(client: ApiClient, ref: CaptureRef, format: Format): URL {
  // Always said: the server's default depends on the capture (pcapng for a scale set's).
  return client.url(`${ref.path}/content`, { format });
}

/** Reads an error answer's body and throws it as a refusal. */
async function refuse(res: IncomingMessage): Promise<never> {
  throw await readRefusal(res);
}

function lengthOf(res: IncomingMessage): number | undefined {
  const header = res.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

/** `Content-Range: bytes a-b/n`, or `bytes *\/n` (a 416). */
function contentRange(res: IncomingMessage) {
  const m = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i.exec(res.headers['content-range'] ?? '');
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    end: m[2] === undefined ? undefined : Number(m[2]),
    size: m[3] === '*' ? undefined : Number(m[3]),
  };
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function toFile(
  client: ApiClient,
  ref: CaptureRef,
  format: Format,
  file: string,
): Promise<DownloadResult> {
  const part = `${file}.part`;
  // Two rounds at most: a part the server cannot continue (416 for another size, a mismatched
  // Content-Range) is dropped and the download starts over once.
  for (let round = 0; round < 2; round++) {
    const offset = await sizeOf(part);
    const res = await client.open('GET', contentUrl(client, ref, format), {
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    });
    const status = res.statusCode ?? 0;
    if (status === 416 && offset > 0) {
      res.resume();
      const range = contentRange(res);
      if (range?.size === offset) {
        // FILE.part already holds the whole file: an earlier run stopped before its rename.
        await rename(part, file);
        return { name: ref.name, file, format, bytes: offset, resumedFrom: offset };
      }
      await unlink(part);
      continue;
    }
    if (status >= 400) return refuse(res);
    let append = false;
    /** The whole file's size when known (a merged ring's is not). */
    let total = lengthOf(res);
    if (status === 206) {
      const range = contentRange(res);
      if (range?.start !== offset) {
        res.destroy();
        await unlink(part);
        continue;
      }
      append = true;
      total = range.size;
    } else if (status !== 200) {
      return refuse(res);
    }
    const kept = append ? offset : 0;
    const handle = await open(part, append ? 'a' : 'w');
    const bar = new ProgressBar(total, kept);
    let written: number;
    try {
      written = await copy(
        res,
        async (chunk) => {
          await handle.write(chunk);
        },
        bar,
        kept,
      );
    } finally {
      bar.done();
      await handle.close();
    }
    if (!res.complete || (total !== undefined && written !== total)) {
      throw interrupted(part, written);
    }
    await rename(part, file);
    return { name: ref.name, file, format, bytes: written, resumedFrom: kept };
  }
  throw new UsageError(
    `cannot resume ${part}: the server does not continue it; delete it and retry`,
  );
}

async function toStdout(client: ApiClient, ref: CaptureRef, format: Format): Promise<void> {
  const res = await client.open('GET', contentUrl(client, ref, format));
  if ((res.statusCode ?? 0) !== 200) return refuse(res);
  const bar = new ProgressBar(lengthOf(res), 0);
  // The reader went away (`| head -c 100`, `tshark -c 10`): not a failure of the download.
  let readerGone = false;
  const onError = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') readerGone = true;
    res.destroy();
  };
  process.stdout.on('error', onError);
  let written: number;
  try {
    written = await copy(
      res,
      async (chunk) => {
        if (readerGone) return;
        if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
      },
      bar,
      0,
    ).catch((err: NodeJS.ErrnoException) => {
      if (readerGone || err.code === 'EPIPE') {
        readerGone = true;
        return 0;
      }
      throw err;
    });
  } finally {
    bar.done();
    // Once the reader is gone, writes still queued fail too: the listener stays to take them.
    if (!readerGone) process.stdout.off('error', onError);
  }
  if (readerGone) {
    res.destroy();
    return;
  }
  const expected = lengthOf(res);
  if (!res.complete || (expected !== undefined && written !== expected)) {
    throw new UnreachableError(
      `download of '${ref.name}' interrupted after ${written} bytes; use --file FILE to be able to resume`,
    );
  }
}

/** Writes the body chunk by chunk; returns the byte count reached (a cut connection ends it early). */
async function copy(
  res: IncomingMessage,
  write: (chunk: Buffer) => Promise<void>,
  bar: ProgressBar,
  start: number,
): Promise<number> {
  let count = start;
  let writing = false;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      writing = true;
      await write(chunk);
      writing = false;
      count += chunk.length;
      bar.update(count);
    }
  } catch (err) {
    // A failed write (a full disk) is the error; a broken connection ends the copy, and the
    // caller finds the body incomplete. What arrived is written and kept for a resume.
    if (writing) throw err;
  }
  return count;
}

function interrupted(part: string, written: number): UnreachableError {
  return new UnreachableError(
    `download interrupted after ${written} bytes (kept in ${part}); run the same command again to resume`,
  );
}

/**
 * `[#####-----]  45%  12.3 MiB / 27.0 MiB  5.2 MiB/s` on stderr, only on a terminal; bytes and
 * rate when the size is unknown (a ring merged on the fly).
 */
class ProgressBar {
  readonly #enabled = process.stderr.isTTY === true;
  readonly #total: number | undefined;
  readonly #start: number;
  readonly #since = Date.now();
  #last = 0;

  constructor(total: number | undefined, start: number) {
    this.#total = total;
    this.#start = start;
  }

  update(bytes: number): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100 && bytes !== this.#total) return;
    this.#last = now;
    const seconds = Math.max((now - this.#since) / 1000, 0.001);
    const rate = `${formatBytes(Math.round((bytes - this.#start) / seconds))}/s`;
    let text: string;
    if (this.#total === undefined || this.#total === 0) {
      text = `${formatBytes(bytes)}  ${rate}`;
    } else {
      const ratio = Math.min(bytes / this.#total, 1);
      const width = 30;
      const filled = Math.round(ratio * width);
      text = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}%  ${formatBytes(bytes)} / ${formatBytes(this.#total)}  ${rate}`;
    }
    process.stderr.write(`\r\x1b[K${text}`);
  }

  done(): void {
    if (this.#enabled && this.#last > 0) process.stderr.write('\r\x1b[K');
  }
}
