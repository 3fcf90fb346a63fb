/**
 * bench/merge: the merge of a scale-set download — 50 instance files into one pcapng with an
 * interface per instance, or into one classic pcap (src/pcap/merge-streams.ts) — against
 * `mergecap` of the same files into the same format, in the same run, alternating, so the
 * machine's noise hits both.
 *
 * The files are written first: 50 classic pcap files (alternately µs and ns) of --packets
 * packets each (default 10,000; 60–1,514 bytes, at random times over the same 10 minutes, as
 * instances capturing at once). Each side then runs as its own process under /usr/bin/time,
 * --runs times (default 3) per format (--format pcapng|pcap|both, default both): our merge,
 * `node dist/bench/merge.js --child FORMAT FILES…`, reads the files as streams in chunks of
 * MERGE_CHUNK_BYTES (as a download reads blobs); mergecap is `mergecap -F pcapng|nsecpcap -w -`
 * (nanosecond pcap, as ours is when an input has nanoseconds). Both write to their standard
 * output, which is the output file: written as it comes, as a download's response is (a
 * socket's writes, like a file descriptor's, do not go through Node's thread pool, which
 * `fs.createWriteStream` does). Printed: elapsed and CPU seconds, peak RSS, and the ratios
 * mergecap / wirewatch (throughput: ≥ 1 means we merge at least as fast). Both outputs are
 * checked: the same packet count (capinfos), and ours names an interface per file in pcapng.
 * A third side, `node-copy`, is the floor under ours: Node reading the same files as the same
 * streams and writing their bytes out unmerged (`--copy FILES…`); no merge in Node can be
 * cheaper.
 *
 * Run: `npm run build && npm run bench:merge [-- --packets N --runs N --format F]`.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, createReadStream, createWriteStream, openSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { intFlag } from './flags.js';
import {
  MERGE_CHUNK_BYTES,
  mergePcapStreams,
  type MergeFormat,
} from '../src/pcap/merge-streams.js';
import { createPcapWriter } from '../src/pcap/writer.js';
import { random } from '../test/support/random.js';

const FILES = 50;

async function writeFiles(dir: string, packets: number): Promise<string[]> {
  const next = random(7);
  const payload = Buffer.alloc(1514, 0x5a);
  const files: string[] = [];
  for (let f = 0; f < FILES; f++) {
    const file = path.join(dir, `vmss1_${f}.pcap`);
    const nano = f % 2 === 1;
    const writer = createPcapWriter(createWriteStream(file), {
      linkType: 1,
      snaplen: 65535,
      precision: nano ? 'nano' : 'micro',
    });
    const times = Array.from({ length: packets }, () => Math.floor(next() * 600e6)).sort(
      (a, b) => a - b,
    );
    for (const us of times) {
      const size = 60 + Math.floor(next() * 1455);
      await writer.write({
        tsSec: 1_765_000_000 + Math.floor(us / 1e6),
        tsFrac: (us % 1e6) * (nano ? 1000 : 1),
        data: payload.subarray(0, size),
      });
    }
    await writer.close();
    files.push(file);
  }
  return files;
}

interface Measure {
  readonly elapsed: number;
  readonly cpu: number;
  readonly rssMiB: number;
}

/**
 * Runs a command under /usr/bin/time with its standard output into `out`; the last stderr line
 * is "elapsed user system maxrss".
 */
function timed(command: string, args: readonly string[], out: string): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const fd = openSync(out, 'w');
    const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', command, ...args], {
      stdio: ['ignore', fd, 'pipe'],
    });
    closeSync(fd);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code) => {
      const last = stderr.trim().split('\n').at(-1) ?? '';
      const [elapsed, user, system, rss] = last.split(' ').map(Number);
      if (code !== 0 || rss === undefined || Number.isNaN(rss)) {
        reject(new Error(`${command} failed (${code}): ${stderr}`));
      } else resolve({ elapsed: elapsed!, cpu: user! + system!, rssMiB: rss / 1024 });
    });
  });
}

/** capinfos's report on `file` with `flags` (e.g. -c: packets, -I: interfaces). */
function capinfos(file: string, flags: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('capinfos', [...flags, file], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}

/** The child: our merge of FILES to standard output, as a download streams it. */
async function child(format: MergeFormat, files: readonly string[]): Promise<void> {
  const inputs = files.map((file) => ({
    name: file,
    interfaceName: path.basename(file, '.pcap'),
    stream: createReadStream(file, { highWaterMark: MERGE_CHUNK_BYTES }),
  }));
  await mergePcapStreams(inputs, process.stdout, { format });
}

/** The floor: the same streams read, a chunk of each in turn, and written out unmerged. */
async function copyChild(files: readonly string[]): Promise<void> {
  const iterators = files.map((file) =>
    createReadStream(file, { highWaterMark: MERGE_CHUNK_BYTES })[Symbol.asyncIterator](),
  );
  while (iterators.length > 0) {
    for (let i = 0; i < iterators.length;) {
      const next = (await iterators[i]!.next()) as IteratorResult<Buffer>;
      if (next.done === true) {
        iterators.splice(i, 1);
        continue;
      }
      if (!process.stdout.write(next.value)) await once(process.stdout, 'drain');
      i++;
    }
  }
}

/** The formats --format asks for. */
function formatsFlag(): MergeFormat[] {
  const args = process.argv.slice(2);
  const value = args[args.indexOf('--format') + 1];
  if (!args.includes('--format') || value === 'both') return ['pcapng', 'pcap'];
  if (value === 'pcapng' || value === 'pcap') return [value];
  throw new Error('--format: pcapng, pcap or both');
}

/** mergecap's name for each output format (nanosecond pcap, as ours is here). */
const MERGECAP_FORMAT: Record<MergeFormat, string> = { pcapng: 'pcapng', pcap: 'nsecpcap' };

/** Runs both sides --runs times into `format` and prints the rows and ratios. */
async function compare(
  format: MergeFormat,
  files: readonly string[],
  options: { readonly dir: string; readonly runs: number; readonly inputBytes: number },
): Promise<void> {
  const ours = path.join(options.dir, `ours.${format}`);
  const theirs = path.join(options.dir, `theirs.${format}`);
  const self = process.argv[1]!;
  const rows: { side: string; m: Measure }[] = [];
  const copied = path.join(options.dir, 'copied');
  for (let r = 0; r < options.runs; r++) {
    const sides = [
      ['wirewatch', () => timed(process.execPath, [self, '--child', format, ...files], ours)],
      [
        'mergecap',
        () => timed('mergecap', ['-F', MERGECAP_FORMAT[format], '-w', '-', ...files], theirs),
      ],
      ['node-copy', () => timed(process.execPath, [self, '--copy', ...files], copied)],
    ] as const;
    // Rotate who goes first, so a burst of load does not always hit the same side.
    const order = [...sides.slice(r % 3), ...sides.slice(0, r % 3)];
    for (const [side, run] of order) rows.push({ side, m: await run() });
  }
  const packetCount = async (file: string) =>
    (await capinfos(file, ['-T', '-r', '-c'])).trim().split('\t')[1];
  const count = [await packetCount(ours), await packetCount(theirs)];
  if (count[0] !== count[1]) throw new Error(`packet counts differ: ${count.join(' vs ')}`);
  const interfaces = await capinfos(ours, ['-I']);
  const median = (side: string, key: keyof Measure): number => {
    const v = rows
      .filter((r) => r.side === side)
      .map((r) => r.m[key])
      .sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)]!;
  };
  const mb = options.inputBytes / 1e6;
  const named = (interfaces.match(/Name = vmss1_\d+/g) ?? []).length;
  process.stdout.write(
    `\ninto ${format}: ${FILES} files, ${count[0]} packets, ${mb.toFixed(0)} MB in` +
      (format === 'pcapng' ? `; ours names ${named} interfaces\n\n` : '\n\n'),
  );
  process.stdout.write('side       run  elapsed s  CPU s  MB/s (CPU)  peak RSS MiB\n');
  for (const [i, { side, m }] of rows.entries()) {
    process.stdout.write(
      `${side.padEnd(10)} ${String(Math.floor(i / 3) + 1).padStart(3)}  ${m.elapsed
        .toFixed(2)
        .padStart(9)}  ${m.cpu.toFixed(2).padStart(5)}  ${(mb / m.cpu)
        .toFixed(0)
        .padStart(11)}  ${m.rssMiB.toFixed(0).padStart(12)}\n`,
    );
  }
  const ratio = (key: keyof Measure, side = 'wirewatch') =>
    median('mergecap', key) / median(side, key);
  process.stdout.write(
    `\nratios into ${format}, medians (mergecap / wirewatch; ≥ 1: wirewatch at least as fast):\n` +
      `  throughput by CPU      ${ratio('cpu').toFixed(2)}  (node-copy: ${ratio('cpu', 'node-copy').toFixed(2)})\n` +
      `  throughput by elapsed  ${ratio('elapsed').toFixed(2)}  (node-copy: ${ratio('elapsed', 'node-copy').toFixed(2)})\n` +
      `  peak RSS (wirewatch / mergecap) ${(1 / ratio('rssMiB')).toFixed(2)}\n`,
  );
}

async function main(): Promise<void> {
  const packets = intFlag('packets', 10_000);
  const runs = intFlag('runs', 3);
  const formats = formatsFlag();
  const dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-bench-merge-'));
  try {
    process.stdout.write(`writing ${FILES} files of ${packets} packets…\n`);
    const files = await writeFiles(dir, packets);
    let inputBytes = 0;
    for (const file of files) inputBytes += (await stat(file)).size;
    for (const format of formats) await compare(format, files, { dir, runs, inputBytes });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf('--child');
const copyAt = process.argv.indexOf('--copy');
if (copyAt >= 0) {
  await copyChild(process.argv.slice(copyAt + 1));
} else if (childAt >= 0) {
  const [format, ...files] = process.argv.slice(childAt + 1);
  if (format !== 'pcapng' && format !== 'pcap') throw new Error(`--child: no format ${format}`);
  await child(format, files);
} else {
  await main();
}
