/**
 * The tail reader of live streams on hand-written files: the header and records as the writer
 * completes them, a record larger than a frame read whole, the byte limit, a bad record length.
 */
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HEADER, record } from '../../test/support/pcap-records.js';
import { PcapTail } from './pcap-tail.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-tail-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('PcapTail', () => {
  it('waits for the header and for the rest of a partial record', async () => {
    const file = path.join(dir, 'a.cap');
    await writeFile(file, HEADER.subarray(0, 10));
    const tail = await PcapTail.open(file);
    try {
      expect(await tail.readHeader()).toBeUndefined();
      const one = record(1);
      const two = record(2);
      await appendFile(file, Buffer.concat([HEADER.subarray(10), one, two.subarray(0, 7)]));
      expect(await tail.readHeader()).toEqual(HEADER);
      const first = await tail.read(1 << 20);
      expect(first?.records).toBe(1);
      expect(first?.data).toEqual(one);
      expect(first?.firstMs).toBe((1_767_225_600 + 1) * 1000);
      // Half a header, then half the data: nothing yet.
      expect(await tail.read(1 << 20)).toBeUndefined();
      await appendFile(file, two.subarray(7, 20));
      expect(await tail.read(1 << 20)).toBeUndefined();
      await appendFile(file, two.subarray(20));
      const second = await tail.read(1 << 20, 36);
      expect(second?.records).toBe(1);
      expect(second?.data.subarray(36)).toEqual(two);
      expect(tail.offset).toBe(24 + one.length + two.length);
    } finally {
      await tail.close();
    }
  });

  it('reads a record larger than the frame size whole, and skips by headers', async () => {
    const file = path.join(dir, 'big.cap');
    const big = record(7, 262144);
    await writeFile(file, Buffer.concat([HEADER, big, record(8), record(9)]));
    const tail = await PcapTail.open(file);
    try {
      await tail.readHeader();
      const batch = await tail.read(1000);
      expect(batch?.records).toBe(1);
      expect(batch?.data.length).toBe(big.length);
      expect(await tail.skip()).toBe(2);
      expect(await tail.skip()).toBe(0);
    } finally {
      await tail.close();
    }
  });

  it('never reads past the limit of a single file', async () => {
    const file = path.join(dir, 'limit.cap');
    await writeFile(file, Buffer.concat([HEADER, record(1), record(2)]));
    const tail = await PcapTail.open(file, 24 + record(1).length + 5);
    try {
      await tail.readHeader();
      expect((await tail.read(1 << 20))?.records).toBe(1);
      expect(await tail.read(1 << 20)).toBeUndefined();
    } finally {
      await tail.close();
    }
  });

  it('refuses a record length no capture can have', async () => {
    const file = path.join(dir, 'bad.cap');
    const bad = record(1);
    bad.writeUInt32LE(5_000_000, 8);
    await writeFile(file, Buffer.concat([HEADER, bad]));
    const tail = await PcapTail.open(file);
    try {
      await tail.readHeader();
      await expect(tail.read(1 << 20)).rejects.toMatchObject({ code: 'InvalidPcap' });
    } finally {
      await tail.close();
    }
  });
});
