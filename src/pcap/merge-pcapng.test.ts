/**
 * The merge of many captures into one, as a scale-set download does it: against mergecap of
 * the same files (classic pcap and pcapng outputs), with one named interface per input in
 * pcapng, pcapng and ring inputs, and memory bounded by a packet per input.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { openCaptureFile } from './capture-file.js';
import { mergePcaps } from './merge.js';
import { mergePcapStreams, type PcapStreamInput } from './merge-streams.js';
import { encodeRecord } from './writer.js';
import type { CapturePacket, TimestampPrecision } from './types.js';
import { label, labelOf, writePcap } from '../../test/support/pcap-files.js';
import {
  makeTempDir,
  removeTempDir,
  runTool,
  tsharkFields,
} from '../../test/support/pcap-tools.js';
import { HEADER } from '../../test/support/pcap-records.js';
import { random } from '../../test/support/random.js';

/** `count` files of 40 packets each, at distinct random times over one minute. */
async function instanceFiles(
  dir: string,
  count: number,
  precisionOf: (i: number) => TimestampPrecision,
): Promise<string[]> {
  const next = random(11);
  const used = new Set<number>();
  const files: string[] = [];
  for (let i = 0; i < count; i++) {
    const precision = precisionOf(i);
    const us: number[] = [];
    while (us.length < 40) {
      const t = Math.floor(next() * 60_000_000);
      if (!used.has(t)) us.push(t);
      used.add(t);
    }
    us.sort((a, b) => a - b);
    const times = us.map(
      (t) =>
        [
          1_765_000_000 + Math.floor(t / 1e6),
          (t % 1e6) * (precision === 'nano' ? 1000 : 1),
        ] as const,
    );
    files.push(await writePcap(dir, { name: `vmss1_${i}`, precision, times, snaplen: 1000 + i }));
  }
  return files;
}

async function readPackets(file: string) {
  const reader = await openCaptureFile(file);
  const packets: CapturePacket[] = [];
  for await (const p of reader.packets) packets.push(p);
  return { format: reader.format, interfaces: reader.interfaces, packets };
}

const toFile = (files: readonly string[], names = true): PcapStreamInput[] =>
  files.map((file, i) => ({
    name: file,
    ...(names ? { interfaceName: `vmss1_${i}` } : {}),
    stream: createReadStream(file, { highWaterMark: 100 }),
  }));

describe('merging into pcapng and against mergecap', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  for (const precision of ['micro', 'nano'] as const) {
    it(`writes pcap with the packets of mergecap -F ${precision === 'nano' ? 'nsecpcap' : 'pcap'}, in its order`, async () => {
      const files = await instanceFiles(dir, 6, () => precision);
      const ours = join(dir, 'ours.pcap');
      const result = await mergePcapStreams(toFile(files), createWriteStream(ours));
      expect(result).toEqual({ records: 240, precision });
      const theirs = join(dir, 'theirs.pcap');
      const type = precision === 'nano' ? 'nsecpcap' : 'pcap';
      expect((await runTool('mergecap', ['-F', type, '-w', theirs, ...files])).code).toBe(0);
      const a = await readPackets(ours);
      const b = await readPackets(theirs);
      expect(a.interfaces).toEqual(b.interfaces.map((i) => ({ ...i, snaplen: 1005 })));
      const rows = (p: CapturePacket) => [p.tsSec, p.tsFrac, p.originalLength, labelOf(p)];
      expect(a.packets.map(rows)).toEqual(b.packets.map(rows));
    });
  }

  it('writes pcapng with one named interface per input, as tshark shows, in the order mergecap merges', async () => {
    const files = await instanceFiles(dir, 5, (i) => (i % 2 === 0 ? 'micro' : 'nano'));
    const ours = join(dir, 'ours.pcapng');
    const result = await mergePcapStreams(toFile(files), createWriteStream(ours), {
      format: 'pcapng',
    });
    expect(result).toEqual({ records: 200, precision: 'nano' });
    const theirs = join(dir, 'theirs.pcapng');
    expect((await runTool('mergecap', ['-w', theirs, ...files])).code).toBe(0);

    const fields = ['frame.interface_name', 'frame.time_epoch', 'frame.cap_len', 'frame.len'];
    const rows = await tsharkFields(ours, fields);
    const theirRows = await tsharkFields(theirs, ['frame.time_epoch', 'frame.cap_len']);
    expect(rows.map(([, time, cap]) => [time, cap])).toEqual(theirRows);
    // Each packet's interface is the input it came from.
    const { interfaces, packets } = await readPackets(ours);
    expect(rows.map(([name]) => name)).toEqual(packets.map((p) => labelOf(p).split('#')[0]));
    expect(interfaces.map((i) => [i.name, i.precision, i.snaplen])).toEqual(
      files.map((_, i) => [`vmss1_${i}`, i % 2 === 0 ? 'micro' : 'nano', 1000 + i]),
    );
  });

  it('keeps each link type in pcapng, and refuses to mix them in pcap', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[2, 0]] });
    const b = await writePcap(dir, {
      name: 'b',
      precision: 'micro',
      linkType: 113,
      times: [[1, 0]],
    });
    const out = join(dir, 'mixed.pcapng');
    await mergePcapStreams(toFile([a, b]), createWriteStream(out), { format: 'pcapng' });
    expect(await tsharkFields(out, ['frame.interface_name', 'frame.encap_type'])).toEqual([
      ['vmss1_1', '25'], // Linux cooked capture
      ['vmss1_0', '1'], // Ethernet
    ]);
    const error = await mergePcapStreams(
      toFile([a, b]),
      new Writable({ write: (_c, _e, cb) => cb() }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WirewatchError);
    expect(error).toMatchObject({ code: 'InvalidPcap', target: b });
  });

  it('reads pcapng inputs: a user can merge pcapng files given to mergePcaps', async () => {
    const a = await writePcap(dir, {
      name: 'a',
      precision: 'nano',
      times: [
        [1, 5],
        [3, 0],
      ],
    });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', times: [[2, 0]] });
    const ng = join(dir, 'a.pcapng');
    await mergePcapStreams(toFile([a]), createWriteStream(ng), { format: 'pcapng' });
    const out = join(dir, 'merged.pcap');
    expect(await mergePcaps([ng, b], createWriteStream(out))).toEqual({
      records: 3,
      precision: 'nano',
    });
    const { format, packets } = await readPackets(out);
    expect(format).toBe('pcap');
    expect(packets.map(labelOf)).toEqual(['a#0', 'b#0', 'a#1']);
  });

  it("takes a ring's files as one input with one interface", async () => {
    const first = await writePcap(dir, {
      name: 'r0',
      precision: 'micro',
      times: [
        [1, 0],
        [3, 0],
      ],
    });
    const second = await writePcap(dir, { name: 'r1', precision: 'micro', times: [[5, 0]] });
    const other = await writePcap(dir, {
      name: 'o',
      precision: 'micro',
      times: [
        [2, 0],
        [4, 0],
      ],
    });
    const out = join(dir, 'ring.pcapng');
    const open = (file: string) => () => createReadStream(file, { highWaterMark: 50 });
    await mergePcapStreams(
      [
        { name: 'ring', interfaceName: 'vmss1_0', files: [open(first), open(second)] },
        { name: 'other', interfaceName: 'vmss1_1', stream: open(other)() },
      ],
      createWriteStream(out),
      { format: 'pcapng' },
    );
    const { interfaces, packets } = await readPackets(out);
    expect(interfaces.map((i) => i.name)).toEqual(['vmss1_0', 'vmss1_1']);
    expect(packets.map((p) => [p.interfaceId, labelOf(p)])).toEqual([
      [0, 'r0#0'],
      [1, 'o#0'],
      [0, 'r0#1'],
      [1, 'o#1'],
      [0, 'r1#0'],
    ]);
  });

  it('merges 50 sources holding one packet of each at a time, never whole files', async () => {
    const sources = 50;
    const perSource = 200;
    const pulled = new Array<number>(sources).fill(0);
    const written = new Array<number>(sources).fill(0);
    let maxAhead = 0;
    // Each source yields its header, then one record per chunk, only when asked for it.
    async function* lazySource(s: number): AsyncGenerator<Buffer> {
      yield HEADER;
      for (let i = 0; i < perSource; i++) {
        await Promise.resolve(); // a chunk arrives later, as from the network
        pulled[s]!++;
        yield encodeRecord({ tsSec: i, tsFrac: s, data: label(`s${s}`, i) }, { byteOrder: 'LE' });
      }
    }
    // The output sees each EPB as it is written and reads whose packet it is.
    const output = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (chunk.readUInt32LE(0) === 6) {
          const s = Number(
            labelOf({ data: chunk.subarray(28, 88) })
              .split('#')[0]!
              .slice(1),
          );
          written[s]!++;
          for (let i = 0; i < sources; i++) maxAhead = Math.max(maxAhead, pulled[i]! - written[i]!);
        }
        callback();
      },
    });
    const inputs = Array.from({ length: sources }, (_, s) => ({
      name: `s${s}`,
      stream: lazySource(s),
    }));
    const result = await mergePcapStreams(inputs, output, { format: 'pcapng' });
    expect(result.records).toBe(sources * perSource);
    expect(written).toEqual(new Array<number>(sources).fill(perSource));
    // Never more than the packet waiting in the merge's heap, per source.
    expect(maxAhead).toBe(1);
  });
});
