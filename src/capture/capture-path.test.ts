import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkCapturePath, prepareCapturePath } from './capture-path.js';

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
});
