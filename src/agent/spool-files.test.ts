/**
 * Spool files on a real temp dir: a ring file kept by a hard link, the names told apart, and the
 * local copies of a Completed spoolOnly upload removed at start.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JournalEntry } from './journal.js';
import { exists, keepInSpool, removeSpooledFiles, ringIndex, spoolIndex } from './spool-files.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-spool-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('spool files', () => {
  it('keeps a ring file by a hard link under the session name', async () => {
    const file = path.join(dir, 'c_3.cap');
    await writeFile(file, 'ring');
    const spoolDir = path.join(dir, 'spool');
    const kept = await keepInSpool(file, { spoolDir, sessionId: 's1', index: 3 });
    expect(kept).toBe(path.join(spoolDir, 's1_3.cap'));
    expect((await stat(kept)).ino).toBe((await stat(file)).ino);
    // Kept again: the old link is replaced.
    expect(await keepInSpool(file, { spoolDir, sessionId: 's1', index: 3 })).toBe(kept);
  });

  it('tells ring and spool names apart', () => {
    expect(ringIndex('/x/c_12.cap')).toBe(12);
    expect(ringIndex('/x/c_12')).toBe(12);
    expect(ringIndex('/x/c.cap')).toBeUndefined();
    expect(spoolIndex('s1_4.cap', 's1')).toBe(4);
    expect(spoolIndex('s2_4.cap', 's1')).toBeUndefined();
  });

  it('removes the local files of a Completed spoolOnly upload, and only then', async () => {
    const sessionId = randomUUID();
    const spoolDir = path.join(dir, 'spool');
    await mkdir(spoolDir);
    const stem = path.join(dir, 'r.cap');
    await writeFile(path.join(dir, 'r_1.cap'), 'a');
    await writeFile(path.join(spoolDir, `${sessionId}_1.cap`), 'a');
    await writeFile(path.join(spoolDir, `other_1.cap`), 'b');
    const entry = (state: 'Pending' | 'Completed'): JournalEntry => ({
      state: 'Stopped',
      capturePath: stem,
      assignment: {
        sessionId,
        resourceId: '/x',
        filePath: stem,
        filters: [],
        bytesToCapturePerPacket: 0,
        totalBytesPerSession: 1 << 30,
        timeLimitInSeconds: 60,
        continuousCapture: true,
        createdAt: new Date().toISOString(),
        blob: {
          url: 'http://blob/c',
          sas: 'sv=1',
          expiresAt: new Date().toISOString(),
          spoolOnly: true,
        },
      },
      upload: { state, blobs: [] },
    });
    await removeSpooledFiles(entry('Pending'), spoolDir);
    expect(await exists(path.join(dir, 'r_1.cap'))).toBe(true);
    await removeSpooledFiles(entry('Completed'), spoolDir);
    expect(await exists(path.join(dir, 'r_1.cap'))).toBe(false);
    expect(await readdir(spoolDir)).toEqual(['other_1.cap']);
  });
});
