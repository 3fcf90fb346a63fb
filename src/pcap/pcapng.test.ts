/**
 * The pcapng writer and reader, checked against tshark, editcap and mergecap: what the writer
 * writes tshark reads packet for packet (interface name, timestamp, lengths), and what those
 * tools write the reader reads as tshark does.
 */
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { createCaptureParser, openCaptureFile } from './capture-file.js';
import { BLOCK_PACKET, BLOCK_SIMPLE_PACKET, encodeSectionHeader } from './pcapng-format.js';
import { createPcapngParser } from './pcapng-reader.js';
import { createPcapngWriter, type PcapngPacketInput } from './pcapng-writer.js';
import type { ByteOrder, CapturePacket } from './types.js';
import { label, labelOf, writePcap } from '../../test/support/pcap-files.js';
import {
  makeTempDir,
  removeTempDir,
  runTool,
  tsharkFields,
} from '../../test/support/pcap-tools.js';

/** "s.fffffffff", as tshark prints frame.time_epoch. */
function epoch(p: { tsSec: number; tsFrac: number }, nano: boolean): string {
  return `${p.tsSec}.${String(nano ? p.tsFrac : p.tsFrac * 1000).padStart(9, '0')}`;
}

const INTERFACES = [
  { name: 'vmss1_0', linkType: 1, snaplen: 65535, precision: 'micro' },
  { name: 'vmss1_1', linkType: 1, snaplen: 40, precision: 'nano' },
  { name: 'vmss1_2', linkType: 101, snaplen: 0, precision: 'micro' },
] as const;

/** Packets over the three interfaces, with timestamps past 2^53 ns and at the edges. */
function packets(): PcapngPacketInput[] {
  const out: PcapngPacketInput[] = [];
  for (let i = 0; i < 30; i++) {
    const interfaceId = i % 3;
    const nano = INTERFACES[interfaceId]!.precision === 'nano';
    out.push({
      interfaceId,
      tsSec: 1_765_000_000 + i,
      tsFrac: nano ? [0, 1, 999_999_999][i % 3]! : (i * 37_123) % 1_000_000,
      data: label(`p${interfaceId}`, i),
      ...(i % 5 === 0 ? { originalLength: 1500 } : {}),
    });
  }
  out.push({ interfaceId: 1, tsSec: 0xffffffff, tsFrac: 999_999_999, data: label('edge', 0) });
  return out;
}

async function writePcapng(file: string, byteOrder: ByteOrder): Promise<PcapngPacketInput[]> {
  const writer = createPcapngWriter(createWriteStream(file), { byteOrder });
  for (const idb of INTERFACES) writer.addInterface(idb);
  const written = packets();
  for (const p of written) await writer.write(p);
  await writer.close();
  return written;
}

/** Pushes `bytes` into a parser `size` bytes at a time. */
function parseInChunks(bytes: Buffer, size: number) {
  const parser = createPcapngParser();
  const out: CapturePacket[] = [];
  for (let i = 0; i < bytes.length; i += size)
    out.push(...parser.push(bytes.subarray(i, i + size)));
  return { parser, packets: out, end: parser.end() };
}

describe('pcapng', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  for (const byteOrder of ['LE', 'BE'] as const) {
    it(`writes ${byteOrder} files that tshark reads: interface name, time, lengths per packet`, async () => {
      const file = join(dir, `out-${byteOrder}.pcapng`);
      const written = await writePcapng(file, byteOrder);
      const rows = await tsharkFields(file, [
        'frame.interface_name',
        'frame.time_epoch',
        'frame.cap_len',
        'frame.len',
      ]);
      expect(rows).toEqual(
        written.map((p) => {
          const idb = INTERFACES[p.interfaceId]!;
          const cap = idb.snaplen > 0 ? Math.min(idb.snaplen, p.data.length) : p.data.length;
          return [
            idb.name,
            epoch(p, idb.precision === 'nano'),
            String(cap),
            String(p.originalLength ?? p.data.length),
          ];
        }),
      );
      const info = await runTool('capinfos', ['-T', '-r', '-t', '-c', file]);
      expect(info.stdout).toMatch(new RegExp(`pcapng\\t${written.length}\\s*$`));
    });

    it(`reads back what it wrote (${byteOrder}), in chunks of any size`, async () => {
      const file = join(dir, `back-${byteOrder}.pcapng`);
      const written = await writePcapng(file, byteOrder);
      const bytes = await readFile(file);
      for (const size of [1, 7, 64, bytes.length]) {
        const { parser, packets: read, end } = parseInChunks(bytes, size);
        expect(end.truncatedBytes).toBe(0);
        expect(parser.sections).toBe(1);
        expect(parser.interfaces).toEqual(INTERFACES.map((i) => ({ ...i, section: 0 })));
        expect(read.map((p) => [p.interfaceId, p.tsSec, p.tsFrac, labelOf(p)])).toEqual(
          written.map((p) => [p.interfaceId, p.tsSec, p.tsFrac, labelOf(p)]),
        );
        // Interface 1's snaplen of 40 cut its packets.
        expect(read.filter((p) => p.interfaceId === 1).every((p) => p.data.length === 40)).toBe(
          true,
        );
      }
    });
  }

  it("reads editcap's and mergecap's pcapng as tshark does", async () => {
    const a = await writePcap(dir, {
      name: 'a',
      precision: 'nano',
      times: [
        [100, 5],
        [102, 999_999_999],
      ],
    });
    const b = await writePcap(dir, { name: 'b', precision: 'micro', times: [[101, 250_000]] });
    const merged = join(dir, 'merged.pcapng');
    expect((await runTool('mergecap', ['-w', merged, a, b])).code).toBe(0);
    const converted = join(dir, 'converted.pcapng');
    expect((await runTool('editcap', ['-F', 'pcapng', b, converted])).code).toBe(0);
    for (const file of [merged, converted]) {
      const reader = await openCaptureFile(file);
      expect(reader.format).toBe('pcapng');
      const read: CapturePacket[] = [];
      for await (const p of reader.packets) read.push(p);
      const rows = await tsharkFields(file, ['frame.interface_id', 'frame.time_epoch']);
      expect(
        read.map((p) => [
          String(p.interfaceId),
          epoch(p, reader.interfaces[p.interfaceId]!.precision === 'nano'),
        ]),
      ).toEqual(rows);
    }
  });

  it('reads several sections, simple and obsolete packet blocks, and skips unknown blocks', async () => {
    const first = join(dir, 'first.pcapng');
    await writePcapng(first, 'LE');
    const second = join(dir, 'second.pcapng');
    await writePcapng(second, 'BE');
    // A third section by hand: one interface, then an unknown block, an SPB and an obsolete PB.
    const le = encodeSectionHeader('LE');
    const idb = Buffer.alloc(20);
    idb.writeUInt32LE(1, 0);
    idb.writeUInt32LE(20, 4);
    idb.writeUInt16LE(1, 8);
    idb.writeUInt32LE(8, 12); // snaplen 8: an SPB keeps 8 bytes
    idb.writeUInt32LE(20, 16);
    const unknown = Buffer.alloc(16, 0xee);
    unknown.writeUInt32LE(0x0bad, 0);
    unknown.writeUInt32LE(16, 4);
    unknown.writeUInt32LE(16, 12);
    const spb = Buffer.alloc(24);
    spb.writeUInt32LE(BLOCK_SIMPLE_PACKET, 0);
    spb.writeUInt32LE(24, 4);
    spb.writeUInt32LE(60, 8);
    spb.write('simple-p', 12);
    spb.writeUInt32LE(24, 20);
    const pb = Buffer.alloc(36);
    pb.writeUInt32LE(BLOCK_PACKET, 0);
    pb.writeUInt32LE(36, 4);
    pb.writeUInt16LE(0, 8);
    pb.writeUInt32LE(0, 12);
    pb.writeUInt32LE(7_000_001, 16); // 7.000001 s in µs
    pb.writeUInt32LE(4, 20);
    pb.writeUInt32LE(4, 24);
    pb.write('obso', 28);
    pb.writeUInt32LE(36, 32);
    const file = join(dir, 'sections.pcapng');
    await writeFile(
      file,
      Buffer.concat([await readFile(first), await readFile(second), le, idb, unknown, spb, pb]),
    );
    const { parser, packets: read } = parseInChunks(await readFile(file), 13);
    expect(parser.sections).toBe(3);
    expect(parser.interfaces.map((i) => [i.name, i.section])).toEqual([
      ['vmss1_0', 0],
      ['vmss1_1', 0],
      ['vmss1_2', 0],
      ['vmss1_0', 1],
      ['vmss1_1', 1],
      ['vmss1_2', 1],
      [undefined, 2],
    ]);
    const n = packets().length;
    expect(read).toHaveLength(2 * n + 2);
    expect(read.slice(n, 2 * n).map((p) => p.interfaceId)).toEqual(
      packets().map((p) => p.interfaceId + 3),
    );
    expect(read[2 * n]).toMatchObject({ interfaceId: 6, tsSec: 0, originalLength: 60 });
    expect(read[2 * n]!.data.toString()).toBe('simple-p');
    expect(read[2 * n + 1]).toMatchObject({ interfaceId: 6, tsSec: 7, tsFrac: 1 });
    expect(read[2 * n + 1]!.data.toString()).toBe('obso');
    // tshark reads the same packets from all three sections (and lists the unknown block as a
    // record of no interface; its interface ids count within a section).
    const rows = await tsharkFields(file, ['frame.interface_id', 'frame.len', 'frame.cap_len']);
    expect(rows.filter(([id]) => id !== '')).toEqual(
      read.map((p) => [
        String(p.interfaceId === 6 ? 0 : p.interfaceId % 3),
        String(p.originalLength),
        String(p.data.length),
      ]),
    );
  });

  it('converts other timestamp resolutions and offsets to micro- or nanoseconds', () => {
    const section = encodeSectionHeader('LE');
    const idb = (tsresol: number, tsoffset?: bigint): Buffer => {
      const options = [Buffer.from([9, 0, 1, 0, tsresol, 0, 0, 0])];
      if (tsoffset !== undefined) {
        const o = Buffer.alloc(12);
        o.writeUInt16LE(14, 0);
        o.writeUInt16LE(8, 2);
        o.writeBigInt64LE(tsoffset, 4);
        options.push(o);
      }
      options.push(Buffer.alloc(4));
      const body = Buffer.concat(options);
      const b = Buffer.alloc(20 + body.length);
      b.writeUInt32LE(1, 0);
      b.writeUInt32LE(b.length, 4);
      b.writeUInt16LE(1, 8);
      body.copy(b, 16);
      b.writeUInt32LE(b.length, b.length - 4);
      return b;
    };
    const epb = (id: number, units: bigint): Buffer => {
      const b = Buffer.alloc(36);
      b.writeUInt32LE(6, 0);
      b.writeUInt32LE(36, 4);
      b.writeUInt32LE(id, 8);
      b.writeUInt32LE(Number(units >> 32n), 12);
      b.writeUInt32LE(Number(units & 0xffffffffn), 16);
      b.writeUInt32LE(1, 20);
      b.writeUInt32LE(1, 24);
      b.writeUInt32LE(36, 32);
      return b;
    };
    const parser = createPcapngParser();
    const read = parser.push(
      Buffer.concat([
        section,
        idb(3), // milliseconds
        idb(0x80 | 20), // 2^-20 s
        idb(12, 100n), // picoseconds, 100 s later
        epb(0, 1_500n),
        epb(1, (5n << 20n) | (1n << 19n)),
        epb(2, 2_000_000_000_123_456n),
      ]),
    );
    expect(parser.interfaces.map((i) => i.precision)).toEqual(['micro', 'nano', 'nano']);
    expect(read.map((p) => [p.tsSec, p.tsFrac])).toEqual([
      [1, 500_000],
      [5, 500_000_000],
      [2100, 123],
    ]);
  });

  it('refuses what is not pcapng, a corrupt length, and a packet of no interface', () => {
    const fails = (bytes: Buffer, message: RegExp) => {
      const parser = createPcapngParser();
      expect(() => parser.push(bytes)).toThrow(message);
      expect(() => parser.push(bytes)).toThrow(WirewatchError);
    };
    fails(Buffer.alloc(24, 0x41), /not a pcapng file/);
    const badLength = encodeSectionHeader('LE');
    badLength.writeUInt32LE(30, 4);
    fails(badLength, /length of 30/);
    const noIdb = Buffer.alloc(36);
    noIdb.writeUInt32LE(6, 0);
    noIdb.writeUInt32LE(36, 4);
    noIdb.writeUInt32LE(36, 32);
    fails(Buffer.concat([encodeSectionHeader('BE'), noIdb]), /length of 603979776/);
    fails(Buffer.concat([encodeSectionHeader('LE'), noIdb]), /interface 0, which no IDB/);
  });

  it('detects the format: classic pcap and pcapng through one parser', async () => {
    const pcap = await writePcap(dir, { name: 'c', precision: 'nano', times: [[5, 6]] });
    const ng = join(dir, 'c.pcapng');
    await writePcapng(ng, 'BE');
    for (const [file, format, count] of [
      [pcap, 'pcap', 1],
      [ng, 'pcapng', packets().length],
    ] as const) {
      const parser = createCaptureParser();
      const bytes = await readFile(file);
      const read: CapturePacket[] = [];
      for (let i = 0; i < bytes.length; i += 3) read.push(...parser.push(bytes.subarray(i, i + 3)));
      expect(parser.format).toBe(format);
      expect(read).toHaveLength(count);
    }
    await expect(openCaptureFile(join(dir, 'missing'))).rejects.toThrow(/ENOENT/);
  });
});
