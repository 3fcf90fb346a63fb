import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { mergePcaps } from './merge.js';
import { mergePcapStreams, type PcapStreamInput } from './merge-streams.js';
import { writePcap } from '../../test/support/pcap-files.js';
import { makeTempDir, removeTempDir } from '../../test/support/pcap-tools.js';

/** Collects what a merge writes. */
function sink(): { output: PassThrough; bytes: () => Buffer } {
  const output = new PassThrough();
  const chunks: Buffer[] = [];
  output.on('data', (c: Buffer) => chunks.push(c));
  output.on('error', () => undefined); // a failed merge destroys the output with its error
  return { output, bytes: () => Buffer.concat(chunks) };
}

/** The files as streams of tiny chunks, so every header and record is split. */
const streamsOf = (files: readonly string[], chunk = 7): PcapStreamInput[] =>
  files.map((file) => ({ name: file, stream: createReadStream(file, { highWaterMark: chunk }) }));

describe('mergePcapStreams', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('writes exactly what mergePcaps writes of the same files', async () => {
    const files = [
      await writePcap(dir, {
        name: 'a',
        precision: 'micro',
        times: [
          [10, 5],
          [12, 0],
          [12, 0],
        ],
      }),
      await writePcap(dir, {
        name: 'b',
        precision: 'nano',
        snaplen: 9000,
        times: [
          [9, 999_999_999],
          [12, 0],
          [13, 1],
        ],
      }),
      await writePcap(dir, { name: 'c', precision: 'micro', times: [] }),
      await writePcap(dir, { name: 'd', precision: 'micro', times: [[11, 1_500_000]] }),
    ];
    const expected = join(dir, 'expected.pcap');
    const out = createWriteStream(expected);
    const reference = await mergePcaps(files, out);
    await finished(out);

    const { output, bytes } = sink();
    const result = await mergePcapStreams(streamsOf(files), output);
    expect(result).toEqual(reference);
    expect(bytes().equals(await readFile(expected))).toBe(true);
  });

  it('skips an incomplete last record, as a reader of the file does', async () => {
    const file = await writePcap(dir, {
      name: 'cut',
      precision: 'micro',
      times: [
        [1, 0],
        [2, 0],
      ],
    });
    const whole = await readFile(file);
    await appendFile(file, whole.subarray(24, 24 + 20)); // a record header and 4 bytes
    const { output, bytes } = sink();
    const result = await mergePcapStreams(streamsOf([file]), output);
    expect(result.records).toBe(2);
    expect(bytes().equals(whole)).toBe(true);
  });

  it('fails on different link types, a stream without a header, or garbage, naming the input', async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', linkType: 113, times: [] });
    const fail = async (inputs: PcapStreamInput[]) => {
      const { output } = sink();
      const error = await mergePcapStreams(inputs, output).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WirewatchError);
      // The output learns why (a download's response is failed with this error).
      expect(output.destroyed).toBe(true);
      expect(output.errored).toBe(error);
      return error as WirewatchError;
    };
    expect(await fail(streamsOf([a, b]))).toMatchObject({ code: 'InvalidPcap', target: b });
    expect(
      await fail([{ name: 'short', stream: Readable.from([Buffer.alloc(10)]) }]),
    ).toMatchObject({ code: 'InvalidPcap', target: 'short' });
    expect(
      await fail([{ name: 'junk', stream: Readable.from([Buffer.alloc(100, 0x41)]) }]),
    ).toMatchObject({ code: 'InvalidPcap', target: 'junk' });
    expect(await fail([])).toMatchObject({ code: 'InvalidPcap' });
  });

  it("fails a link-type mismatch with the caller's error, before any byte is output", async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', linkType: 113, times: [] });
    const { output, bytes } = sink();
    const seen: unknown[] = [];
    const error = await mergePcapStreams(streamsOf([a, b]), output, {
      linkTypeMismatch: (m) => {
        seen.push(m);
        return new WirewatchError('InvalidRequestContent', 'pick another format', {
          target: 'format',
        });
      },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'InvalidRequestContent', target: 'format' });
    expect(seen).toEqual([{ input: b, linkType: 113, first: a, firstLinkType: 1 }]);
    expect(output.errored).toBe(error);
    expect(bytes().length).toBe(0);
  });

  it("fails with an input stream's own error and stops reading the others", async () => {
    const a = await writePcap(dir, { name: 'a', precision: 'micro', times: [[1, 0]] });
    for (const brokenFirst of [false, true]) {
      const broken = new Readable({
        read() {
          this.destroy(new Error('agent went away'));
        },
      });
      const other = createReadStream(a);
      const inputs = [
        { name: 'a', stream: other },
        { name: 'broken', stream: broken },
      ];
      const { output } = sink();
      await expect(
        mergePcapStreams(brokenFirst ? inputs.reverse() : inputs, output),
      ).rejects.toThrow('agent went away');
      // Read or not yet, the other input is closed.
      expect(other.destroyed).toBe(true);
    }
  });
});
