/**
 * The admin token across restarts of a real server on one data dir: changing
 * WIREWATCH_ADMIN_TOKEN or rotating retires the previous token, and a retired token cannot be
 * brought back.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type StartServerOptions } from '../../src/server/start-server.js';
import { apiClient } from '../lab/control-plane.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ww-admin-token-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Starts a server on `dir`, runs `fn` against its URL, and stops it. */
async function withServer<T>(
  dir: string,
  options: Partial<StartServerOptions>,
  fn: (url: string, newToken: string | undefined) => Promise<T>,
): Promise<T> {
  const server = await startServer({
    dataDir: dir,
    listen: '127.0.0.1:0',
    logger: false,
    ...options,
  });
  try {
    return await fn(server.url, server.newAdminToken);
  } finally {
    await server.close();
  }
}

async function status(url: string, token: string): Promise<number> {
  return (await apiClient(url, token).call('GET', '/api/v1/subscriptions')).status;
}

describe('admin token rotation', () => {
  it('a changed WIREWATCH_ADMIN_TOKEN retires the previous one', async () => {
    const dir = path.join(root, 'env');
    const first = 'wwadmin_first_token_0123456789';
    const second = 'wwadmin_second_token_0123456789';
    await withServer(dir, { adminToken: first }, async (url) => {
      expect(await status(url, first)).toBe(200);
    });
    await withServer(dir, { adminToken: second }, async (url) => {
      expect(await status(url, second)).toBe(200);
      expect(await status(url, first)).toBe(401);
    });
    // Going back to the retired token is refused at start, not silently reinstated.
    await expect(withServer(dir, { adminToken: first }, () => Promise.resolve())).rejects.toThrow(
      /retired/,
    );
  });

  it('moving from the variable to DIR/admin.token retires the variable’s token', async () => {
    const dir = path.join(root, 'env-to-file');
    const fromEnv = 'wwadmin_env_token_0123456789';
    await withServer(dir, { adminToken: fromEnv }, () => Promise.resolve());
    await withServer(dir, {}, async (url, fresh) => {
      const fromFile = (await readFile(path.join(dir, 'admin.token'), 'utf8')).trim();
      expect(fresh).toBe(fromFile);
      expect(await status(url, fromFile)).toBe(200);
      expect(await status(url, fromEnv)).toBe(401);
    });
  });

  it('rotateAdminToken writes a new token (0600) and revokes the old one', async () => {
    const dir = path.join(root, 'rotate');
    const file = path.join(dir, 'admin.token');
    const old = await withServer(dir, {}, async () => (await readFile(file, 'utf8')).trim());
    await withServer(dir, { rotateAdminToken: true }, async (url, fresh) => {
      const now = (await readFile(file, 'utf8')).trim();
      expect(fresh).toBe(now);
      expect(now).not.toBe(old);
      expect(now).toMatch(/^wwadmin_/);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await status(url, now)).toBe(200);
      expect(await status(url, old)).toBe(401);
    });
    // A plain restart keeps the rotated token.
    await withServer(dir, {}, async (url, fresh) => {
      expect(fresh).toBeUndefined();
      expect(await status(url, (await readFile(file, 'utf8')).trim())).toBe(200);
      expect(await status(url, old)).toBe(401);
    });
  });

  it('refuses to rotate while WIREWATCH_ADMIN_TOKEN names the token', async () => {
    await expect(
      withServer(
        path.join(root, 'rotate-env'),
        { adminToken: 'wwadmin_env_token_0123456789', rotateAdminToken: true },
        () => Promise.resolve(),
      ),
    ).rejects.toThrow(/WIREWATCH_ADMIN_TOKEN is set/);
  });
});
