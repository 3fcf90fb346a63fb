import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { mergePcaps } from './merge.js';
import { openPcapFile } from './reader.js';
import { labelOf, writePcap } from '../../test/support/pcap-files.js';
import { makeTempDir, removeTempDir, tsharkFields } from '../../test/support/pcap-tools.js';
import type { PcapRecord } from './types.js';

async function readAll(file: string) {
  const reader = await openPcapFile(file);
  const records: PcapRecord[] = [];
  for await (const r of reader.records) records.push(r);
  return { header: reader.header, records };
}

describe('mergePcaps', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('merges by timestamp, ties in input order, into nanoseconds when any input has them', async () => {
    const a = await writePcap(dir, {
      name: 'a',
      precision: 'micro',
      snaplen: 1000,
      times: [
        [1, 1],
        [3, 500_000],
        [5, 0],
      ],
    });
    const b = await writePcap(dir, {
      name: 'b',
      precision: 'nano',
      byteOrder: 'BE',
      times: [
        [1, 500],
        [3, 500_000_000],
        [3, 500_000_001],
        [6, 999_999_999],
      ],
    });
    const c = await writePcap(dir, {
      name: 'c',
      precision: 'micro',
      snaplen: 200,
      times: [
        [0, 999_999],
        [3, 500_000],
        [7, 0],
      ],
    });
    const out = join(dir, 'merged.pcap');
    const result = await mergePcaps([a, b, c], createWriteStream(out));
    expect(result).toEqual({ records: 10, precision: 'nano' });

    const { header, records } = await readAll(out);
    expect(header).toMatchObject({ precision: 'nano', snaplen: 65535, linkType: 1 });
    expect(records.map(labelOf)).toEqual([
      'c#0',
      'b#0',
      'a#0',
      'a#1',
      'b#1',
      'c#1',
      'b#2',
      'a#2',
      'b#3',
      'c#2',
    ]);
    expect(records.map((r) => [r.tsSec, r.tsFrac])).toEqual([
      [0, 999_999_000],
      [1, 500],
      [1, 1000],
      [3, 500_000_000],
      [3, 500_000_000],
      [3, 500_000_000],
      [3, 500_000_001],
      [5, 0],
      [6, 999_999_999],
      [7, 0],
    ]);

    const times = (await tsharkFields(out, ['frame.time_epoch'])).map((row) => row[0]);
    expect(times).toHaveLength(10);
    expect(times[0]).toBe('0.999999000');
    expect(times[1]).toBe('1.000000500');
    expect([...times].sort()).toEqual(times);
  });

  it('stays in microseconds when every input has them', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[2, 5]] });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', times: [[1, 7]] });
    const out = join(dir, 'merged.pcap');
    expect(await mergePcaps([a, b], createWriteStream(out))).toEqual({
      records: 2,
      precision: 'micro',
    });
    const { header, records } = await readAll(out);
    expect(header.precision).toBe('micro');
    expect(records.map((r) => [labelOf(r), r.tsSec, r.tsFrac])).toEqual([
      ['b#0', 1, 7],
      ['a#0', 2, 5],
    ]);
  });

  it('carries fractions of a second beyond one second into the seconds', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 2_500_000]] });
    const b = await writePcap(dir, { name: 'b', precision: 'nano', times: [[2, 0xffffffff]] });
    const out = join(dir, 'merged.pcap');
    await mergePcaps([a, b], createWriteStream(out));
    const { records } = await readAll(out);
    expect(records.map((r) => [labelOf(r), r.tsSec, r.tsFrac])).toEqual([
      ['a#0', 3, 500_000_000],
      ['b#0', 6, 294_967_295],
    ]);
  });

  it('streams large inputs', async () => {
    const many = (offset: number): [number, number][] =>
      Array.from({ length: 5000 }, (_, i): [number, number] => [i, offset]);
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: many(1) });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', times: many(2) });
    const out = join(dir, 'merged.pcap');
    expect((await mergePcaps([a, b], createWriteStream(out))).records).toBe(10_000);
    const { records } = await readAll(out);
    expect(records.slice(0, 4).map(labelOf)).toEqual(['a#0', 'b#0', 'a#1', 'b#1']);
  });

  it('refuses inputs of different link types, naming the file', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    const b = await writePcap(dir, {
      name: 'b',
      precision: 'micro',
      linkType: 276,
      times: [[1, 0]],
    });
    const output = createWriteStream(join(dir, 'merged.pcap'));
    const error = await mergePcaps([a, b], output).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WirewatchError);
    expect(error).toMatchObject({ code: 'InvalidPcap', target: b });
    expect((error as Error).message).toContain(b);
    expect(output.destroyed).toBe(true);
  });

  it('refuses an input that is not a pcap file, and an empty list', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    const bad = join(dir, 'bad.pcap');
    await writeFile(bad, Buffer.alloc(100, 0x20));
    await expect(mergePcaps([a, bad], createWriteStream(join(dir, 'm1')))).rejects.toMatchObject({
      code: 'InvalidPcap',
      target: bad,
    });
    await expect(mergePcaps([], createWriteStream(join(dir, 'm2')))).rejects.toMatchObject({
      code: 'InvalidPcap',
    });
  });

  it('stops when its signal aborts', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    const controller = new AbortController();
    controller.abort(new Error('stopped by the test'));
    await expect(
      mergePcaps([a], createWriteStream(join(dir, 'm')), { signal: controller.signal }),
    ).rejects.toThrow('stopped by the test');
  });
});
