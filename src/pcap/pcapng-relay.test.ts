/**
 * The live re-framing of pcap streams into one pcapng stream (a scale set's merged live view),
 * checked with tshark: an interface per input named as given, each packet on its input's
 * interface with its time and bytes, and an input added after packets of another have gone out
 * (a late joiner: its IDB comes between packets).
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFileHeader } from './format.js';
import { PcapngRelay } from './pcapng-relay.js';
import { encodeRecord } from './writer.js';
import { HEADER } from '../../test/support/pcap-records.js';
import { makeTempDir, removeTempDir, tsharkFields } from '../../test/support/pcap-tools.js';

const NANO_HEADER = encodeFileHeader({
  byteOrder: 'BE',
  precision: 'nano',
  versionMajor: 2,
  versionMinor: 4,
  snaplen: 96,
  linkType: 113,
});

describe('PcapngRelay', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('re-frames each input as it comes, on its own interface; an input may join between packets', async () => {
    const relay = new PcapngRelay();
    const out: Buffer[] = [relay.header()];
    const web0 = relay.addInput('web_0');
    const idb = web0.push(HEADER);
    expect(idb).toMatchObject({ interface: true, packets: 0 });
    out.push(idb.blocks);
    const first = Buffer.concat([
      encodeRecord({ tsSec: 100, tsFrac: 5, data: Buffer.alloc(60, 1) }, { byteOrder: 'LE' }),
      encodeRecord({ tsSec: 102, tsFrac: 0, data: Buffer.alloc(61, 2) }, { byteOrder: 'LE' }),
    ]);
    const epbs = web0.push(first);
    expect(epbs).toMatchObject({ interface: false, packets: 2 });
    out.push(epbs.blocks);

    // web_1 joins late, big-endian, nanoseconds, Linux cooked, snaplen 96.
    const web1 = relay.addInput('web_1');
    out.push(web1.push(NANO_HEADER).blocks);
    expect(web1.interfaceId).toBe(1);
    const late = encodeRecord(
      { tsSec: 101, tsFrac: 123_456_789, data: Buffer.alloc(70, 3), originalLength: 1500 },
      { byteOrder: 'BE' },
    );
    // A partial record at the end of a frame is left out.
    out.push(web1.push(Buffer.concat([late, late.subarray(0, 20)])).blocks);
    out.push(
      web0.push(
        encodeRecord({ tsSec: 103, tsFrac: 0, data: Buffer.alloc(62, 4) }, { byteOrder: 'LE' }),
      ).blocks,
    );
    expect(web0.count(first)).toBe(2);

    const file = join(dir, 'live.pcapng');
    await writeFile(file, Buffer.concat(out));
    expect(
      await tsharkFields(file, [
        'frame.interface_name',
        'frame.time_epoch',
        'frame.cap_len',
        'frame.len',
        'frame.encap_type',
      ]),
    ).toEqual([
      ['web_0', '100.000005000', '60', '60', '1'],
      ['web_0', '102.000000000', '61', '61', '1'],
      ['web_1', '101.123456789', '70', '1500', '25'],
      ['web_0', '103.000000000', '62', '62', '1'],
    ]);
  });

  it('refuses a first frame that is no pcap header', () => {
    const input = new PcapngRelay().addInput('web_0');
    expect(() => input.push(Buffer.alloc(24, 0x41))).toThrow(/magic|pcap/i);
    expect(() => new PcapngRelay().addInput('x').count(Buffer.alloc(16))).toThrow(/header/);
  });
});
