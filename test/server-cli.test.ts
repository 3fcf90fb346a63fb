/**
 * `wirewatch server` and `wirewatch agent` as a user runs them: the built binary, its flags,
 * the admin token file, TLS with the self-signed CA, and an agent that trusts that CA.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, createTenant, waitFor } from './lab/control-plane.js';
import {
  freePort,
  launch as launchCli,
  serverUrl as listening,
  stopProcess,
  type CliProcess,
} from './lab/cli-process.js';
import { isRoot } from './lab/exec.js';
import { ENROLL_PATH } from '../src/model/channel.js';

const running: CliProcess[] = [];

function launch(args: string[], env: Record<string, string | undefined> = {}): CliProcess {
  const proc = launchCli(args, env);
  running.push(proc);
  return proc;
}

describe('wirewatch server', () => {
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'ww-server-cli-'));
  });

  afterAll(async () => {
    for (const proc of running) {
      try {
        process.kill(-proc.child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await rm(root, { recursive: true, force: true });
  });

  it('generates an admin token in DIR/admin.token (0600) and keeps it across restarts', async () => {
    const dir = path.join(root, 'generated');
    const port = await freePort();
    const first = launch(['server', '--data-dir', dir, '--listen', `127.0.0.1:${port}`], {
      WIREWATCH_ADMIN_TOKEN: undefined,
    });
    const url = await listening(first);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    const file = path.join(dir, 'admin.token');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const token = (await readFile(file, 'utf8')).trim();
    const api = apiClient(url, token);
    expect((await api.call('GET', '/api/v1/subscriptions')).status).toBe(200);
    expect(
      (await api.call('GET', '/api/v1/subscriptions', { token: 'wwadmin_wrong' })).status,
    ).toBe(401);
    expect(await stopProcess(first)).toBe(0);
    // The output names the file, never the token.
    expect(first.output()).not.toContain(token);

    const second = launch(['server', '--data-dir', dir, '--listen', `127.0.0.1:${port}`], {
      WIREWATCH_ADMIN_TOKEN: undefined,
    });
    await listening(second);
    expect((await readFile(file, 'utf8')).trim()).toBe(token);
    expect((await api.call('GET', '/api/v1/subscriptions')).status).toBe(200);
    await stopProcess(second);
  });

  it('--rotate-admin-token prints a new token once, writes it to DIR/admin.token and revokes the old', async () => {
    const dir = path.join(root, 'rotated');
    const port = await freePort();
    const env = { WIREWATCH_ADMIN_TOKEN: undefined };
    const listen = ['server', '--data-dir', dir, '--listen', `127.0.0.1:${port}`];
    const first = launch(listen, env);
    await listening(first);
    const file = path.join(dir, 'admin.token');
    const old = (await readFile(file, 'utf8')).trim();
    expect(await stopProcess(first)).toBe(0);

    const rotating = launch([...listen, '--rotate-admin-token'], env);
    const url = await listening(rotating);
    const fresh = (await readFile(file, 'utf8')).trim();
    expect(fresh).not.toBe(old);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(rotating.output()).toContain(`new admin token (every earlier one is revoked): ${fresh}`);
    expect(rotating.output()).not.toContain(old);
    expect((await apiClient(url, fresh).call('GET', '/api/v1/subscriptions')).status).toBe(200);
    expect((await apiClient(url, old).call('GET', '/api/v1/subscriptions')).status).toBe(401);
    expect(await stopProcess(rotating)).toBe(0);

    // With WIREWATCH_ADMIN_TOKEN set, rotating is refused.
    const refused = launch([...listen, '--rotate-admin-token'], {
      WIREWATCH_ADMIN_TOKEN: 'wwadmin_cli_env_token_0123456789',
    });
    expect(await refused.exited).not.toBe(0);
    expect(refused.output()).toContain('WIREWATCH_ADMIN_TOKEN is set');
  });

  it('refuses a --tls-san that is no name or address, and --tls-san without --tls self-signed', async () => {
    const dir = path.join(root, 'san');
    const bad = launch([
      'server',
      '--data-dir',
      dir,
      '--listen',
      '127.0.0.1:0',
      '--tls',
      'self-signed',
      '--tls-san',
      'not a name',
    ]);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain(
      '--tls-san: "not a name" is neither an IP address nor a DNS name',
    );
    const alone = launch([
      'server',
      '--data-dir',
      dir,
      '--listen',
      '127.0.0.1:0',
      '--tls-san',
      'x.example',
    ]);
    expect(await alone.exited).toBe(2);
    expect(alone.output()).toContain('--tls self-signed');
  });

  it('refuses plain HTTP on a non-loopback address unless --allow-insecure-http', async () => {
    const proc = launch(['server', '--data-dir', path.join(root, 'open'), '--listen', '0.0.0.0:0']);
    expect(await proc.exited).not.toBe(0);
    expect(proc.output()).toMatch(/--tls self-signed.*--allow-insecure-http|clear text/);
  });

  it('refuses a malformed --listen and an unknown --db with a clear message', async () => {
    const bad = launch(['server', '--data-dir', path.join(root, 'bad'), '--listen', 'nonsense']);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain('--listen');
    const db = launch([
      'server',
      '--data-dir',
      path.join(root, 'bad'),
      '--listen',
      '127.0.0.1:0',
      '--db',
      'mysql://x',
    ]);
    expect(await db.exited).toBe(2);
    expect(db.output()).toContain('--db');
  });

  it('--public-url is what polling URLs carry and is printed; a malformed one, a bad --rate-limit or --trust-proxy is refused', async () => {
    const dir = path.join(root, 'public-url');
    const port = await freePort();
    const proc = launch([
      'server',
      '--data-dir',
      dir,
      '--listen',
      `127.0.0.1:${port}`,
      '--public-url',
      'https://wirewatch.example.net:9443/',
      '--rate-limit',
      '500',
      '--trust-proxy',
      '127.0.0.1,::1',
    ]);
    const url = await listening(proc);
    expect(proc.output()).toContain('public URL:     https://wirewatch.example.net:9443');
    const admin = (await readFile(path.join(dir, 'admin.token'), 'utf8')).trim();
    const api = apiClient(url, admin);
    const sub = (await createTenant(api, 'public-url')).subscriptionId;
    const audit = await api.call('GET', `/api/v1/subscriptions/${sub}/audit?$top=1`, {
      headers: { host: 'evil.example' },
    });
    expect(audit.body.nextLink).toMatch(/^https:\/\/wirewatch\.example\.net:9443\/api\/v1\//);
    await stopProcess(proc);

    for (const args of [
      ['--public-url', 'ftp://x.example'],
      ['--rate-limit', 'lots'],
      ['--trust-proxy', 'proxy.example'],
    ]) {
      const bad = launch([
        'server',
        '--data-dir',
        path.join(root, 'bad'),
        '--listen',
        '127.0.0.1:0',
        ...args,
      ]);
      expect(await bad.exited).toBe(2);
      expect(bad.output()).toContain(args[0]);
    }
  });

  it('--max-vms-per-subscription caps the VMs a subscription enrolls; a bad value is refused', async () => {
    const dir = path.join(root, 'max-vms');
    const port = await freePort();
    const proc = launch([
      'server',
      '--data-dir',
      dir,
      '--listen',
      `127.0.0.1:${port}`,
      '--max-vms-per-subscription',
      '1',
    ]);
    const url = await listening(proc);
    const admin = (await readFile(path.join(dir, 'admin.token'), 'utf8')).trim();
    const api = apiClient(url, admin);
    const tenant = await createTenant(api, 'max-vms');
    const enroll = (name: string) =>
      api.call('POST', ENROLL_PATH, {
        token: tenant.enrollToken,
        body: {
          subscriptionId: tenant.subscriptionId,
          resourceGroup: 'web',
          name,
          location: 'westeurope',
          hostname: name,
          captureRoot: '/var/captures',
        },
      });
    expect((await enroll('web-01')).status).toBe(201);
    const refused = await enroll('web-02');
    expect([refused.status, refused.body.error.code]).toEqual([403, 'EnrollmentLimitReached']);
    await stopProcess(proc);

    const bad = launch([
      'server',
      '--data-dir',
      path.join(root, 'bad'),
      '--listen',
      '127.0.0.1:0',
      '--max-vms-per-subscription',
      '0',
    ]);
    expect(await bad.exited).toBe(2);
    expect(bad.output()).toContain('--max-vms-per-subscription');
  });

  it.skipIf(!isRoot)(
    'with --tls self-signed, serves HTTPS with DIR/tls/ca.crt, and an agent with --ca enrolls and connects',
    async () => {
      const dir = path.join(root, 'tls');
      const port = await freePort();
      const adminToken = 'wwadmin_cli_test_token_0123456789';
      const server = launch(
        ['server', '--data-dir', dir, '--listen', `127.0.0.1:${port}`, '--tls', 'self-signed'],
        {
          WIREWATCH_ADMIN_TOKEN: adminToken,
        },
      );
      const url = await listening(server);
      expect(url).toBe(`https://127.0.0.1:${port}`);
      const caPath = path.join(dir, 'tls', 'ca.crt');
      expect(server.output()).toContain(caPath);
      const ca = await readFile(caPath);
      const api = apiClient(url, adminToken, { ca });
      const tenant = await createTenant(api, 'tls');
      // Without the CA, the server's certificate is not trusted.
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();

      const agentDir = path.join(root, 'agent-tls');
      const agent = launch([
        'agent',
        '--server',
        url,
        '--ca',
        caPath,
        '--enroll-token',
        tenant.enrollToken,
        '--subscription',
        tenant.subscriptionId,
        '--resource-group',
        'rg',
        '--name',
        'loopback-host',
        '--location',
        'westeurope',
        '--interface',
        'lo',
        '--data-dir',
        agentDir,
        '--capture-root',
        path.join(root, 'captures'),
      ]);
      await waitFor(
        () =>
          api.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/agents`, {
            token: tenant.reader,
          }),
        (r) => r.body?.value?.[0]?.connectionState === 'Connected',
        20_000,
      );
      expect((await stat(path.join(agentDir, 'agent.json'))).mode & 0o777).toBe(0o600);
      // Neither log holds the enrollment token or the agent's credential.
      const credential = (
        JSON.parse(await readFile(path.join(agentDir, 'agent.json'), 'utf8')) as {
          credential: string;
        }
      ).credential;
      for (const secret of [tenant.enrollToken, credential, adminToken]) {
        expect(agent.output()).not.toContain(secret);
        expect(server.output()).not.toContain(secret);
      }
      expect(await stopProcess(agent)).toBe(0);
      expect(await stopProcess(server)).toBe(0);
    },
  );
});
