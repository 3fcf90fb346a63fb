import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkCapturePath,
  isInside,
  isUnder,
  openCaptureFile,
  prepareCapturePath,
} from './capture-path.js';

describe('capture paths', () => {
  let root: string;
  let outside: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ww-root-'));
    outside = await mkdtemp(path.join(tmpdir(), 'ww-outside-'));
    await symlink(outside, path.join(root, 'escape'));
    await mkdir(path.join(root, 'inner'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('accepts files under the root, creating folders', async () => {
    expect(checkCapturePath('/var/captures/pc1.cap', '/var/captures')).toBe(
      '/var/captures/pc1.cap',
    );
    const file = await prepareCapturePath(path.join(root, 'a/b/c.pcap'), root);
    expect(file).toBe(
      path.join(await import('node:fs/promises').then((f) => f.realpath(root)), 'a/b/c.pcap'),
    );
  });

  it.each([
    ['relative/pc1.cap', /absolute/],
    ['/var/captures/../etc/pc1.cap', /"\.\."/],
    ['/etc/pc1.cap', /under the capture root/],
    ['/var/captures', /under the capture root/],
    ['/var/capturesX/pc1.cap', /under the capture root/],
    ['/var/captures/pc1.txt', /\.cap or \.pcap/],
    ['', /not a valid path/],
  ])('refuses %j', (p, rule) => {
    expect(() => checkCapturePath(p, '/var/captures', 'storageLocation.filePath')).toThrow(
      expect.objectContaining({
        code: 'InvalidCapturePath',
        target: 'storageLocation.filePath',
        message: expect.stringMatching(rule),
      }),
    );
  });

  it('refuses a path that leaves the root through a symbolic link', async () => {
    await expect(prepareCapturePath(path.join(root, 'escape/x.cap'), root)).rejects.toMatchObject({
      code: 'InvalidCapturePath',
      message: expect.stringMatching(/symbolic link/),
    });
    await expect(
      prepareCapturePath(path.join(root, 'escape/deeper/x.cap'), root),
    ).rejects.toMatchObject({
      code: 'InvalidCapturePath',
    });
  });

  it('tells what lies inside a root, and under it', () => {
    expect([isInside('/r', '/r'), isUnder('/r', '/r')]).toEqual([true, false]);
    expect([isInside('/r', '/r/a/b'), isUnder('/r', '/r/a/b')]).toEqual([true, true]);
    for (const outside of ['/', '/rx', '/rx/a', '/other/r', '/r/../x']) {
      expect([isInside('/r', outside), isUnder('/r', outside)]).toEqual([false, false]);
    }
    // A first name that starts with two dots counts as outside: refused rather than risked.
    expect(isUnder('/r', '/r/..a')).toBe(false);
  });

  it('opens a regular file really under a root, and nothing else', async () => {
    await writeFile(path.join(outside, 'x.cap'), 'x');
    await writeFile(path.join(root, 'inner', 'y.cap'), 'y');
    const file = await openCaptureFile(path.join(root, 'inner', 'y.cap'), { roots: [root] });
    expect((await file.readFile()).toString()).toBe('y');
    await file.close();
    await expect(
      openCaptureFile(path.join(root, 'escape', 'x.cap'), { roots: [root], name: 'asked.cap' }),
    ).rejects.toMatchObject({
      code: 'InvalidCapturePath',
      message: 'asked.cap leads out of the capture folders',
    });
    // Without roots only the file itself is checked.
    const anywhere = await openCaptureFile(path.join(root, 'escape', 'x.cap'), { roots: [] });
    await anywhere.close();
    await expect(openCaptureFile(root, { roots: [root] })).rejects.toMatchObject({
      code: 'InvalidCapturePath',
      message: `${root} is not a regular file`,
    });
    await symlink(path.join(root, 'inner', 'y.cap'), path.join(root, 'link.cap'));
    await expect(
      openCaptureFile(path.join(root, 'link.cap'), { roots: [root] }),
    ).rejects.toMatchObject({ code: 'ELOOP' });
  });
});
