import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { repairPcapFile } from './repair.js';
import { fileBytes } from '../../test/support/pcap-frames.js';
import {
  makeTempDir,
  removeTempDir,
  runTool,
  TSHARK,
  tsharkFields,
} from '../../test/support/pcap-tools.js';

describe('repairPcapFile', () => {
  let dir = '';
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await removeTempDir(dir);
  });

  it('repairs a file cut mid-record so that tshark reads it cleanly', async () => {
    const file = join(dir, 'crash.pcap');
    const bytes = fileBytes({}, 20);
    const cut = bytes.length - 30;
    await writeFile(file, bytes.subarray(0, cut));

    const broken = await runTool(TSHARK, ['-r', file]);
    expect(broken.stderr).toMatch(/cut short/);

    const result = await repairPcapFile(file);
    expect(result.keptRecords).toBe(19);
    expect(result.removedBytes).toBe(cut - (bytes.length - 16 - ((19 * 37) % 300)));
    expect((await stat(file)).size).toBe(cut - result.removedBytes);
    expect(await tsharkFields(file, ['frame.number'])).toHaveLength(19);

    expect(await repairPcapFile(file)).toEqual({
      keptRecords: 19,
      removedBytes: 0,
      outsideWindow: 0,
      reachedMaxBytes: false,
    });
  });

  it('repairs a file whose tail is garbage', async () => {
    const file = join(dir, 'garbage.pcap');
    const good = fileBytes({ snaplen: 262144 }, 5);
    await writeFile(file, good);
    await appendFile(file, Buffer.alloc(64, 0xff));
    expect(await repairPcapFile(file)).toEqual({
      keptRecords: 5,
      removedBytes: 64,
      outsideWindow: 0,
      reachedMaxBytes: false,
    });
    expect(await readFile(file)).toEqual(good);
    expect(await tsharkFields(file, ['frame.number'])).toHaveLength(5);
  });

  it('refuses to repair a file without a whole header', async () => {
    const file = join(dir, 'stub.pcap');
    await writeFile(file, fileBytes({}, 0).subarray(0, 12));
    await expect(repairPcapFile(file)).rejects.toMatchObject({ code: 'InvalidPcap' });
    expect((await stat(file)).size).toBe(12);
  });
});
