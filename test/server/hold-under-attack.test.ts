/**
 * Issue 9 "Hold under attack", the HTTP side: a real server on loopback, real sockets.
 *
 * - Only the agent channel and live streams upgrade, and only after their checks; every other
 *   route (health, unknown paths, any API route even with a valid token) answers an HTTP error
 *   and drops the connection, so a peer cannot park megabytes of an unfinished frame on it.
 * - A viewer may send only small frames; a token has a bounded number of sockets.
 * - Revoking a token closes its live streams at once; deleting a VM closes its agent channel.
 * - Absolute URLs come from the configured public URL, never from a forged Host header.
 * - Rate limits per token and per address, driven by an injected clock (no sleeping).
 * - `POST …/stop` and `…/queryStatus` with `Content-Type: application/json` and no body work.
 */
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { CHANNEL_PATH, CHANNEL_PROTOCOL_VERSION, ENROLL_PATH } from '../../src/model/channel.js';
import { encodeFileHeader } from '../../src/pcap/format.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
  upgradeStatus,
} from '../lab/control-plane.js';

const RG = 'rg-attack';
const LOCATION = 'westeurope';
const NW_RG = 'NetworkWatcherRG';
const NW = `NetworkWatcher_${LOCATION}`;
const MIB = 1024 * 1024;

// ---- a small agent that keeps live streams open ------------------------------------------

/**
 * Enrolls, connects, starts every capture it is assigned and answers every stream with a pcap
 * header, then keeps it open (the synthetic agent of test/lab ends streams at once).
 */
class HoldingAgent {
  readonly streams = new Set<string>();
  readonly stopped = new Set<string>();
  vmId = '';
  credential = '';
  socket: WebSocket | undefined;
  closed: Promise<number> = Promise.resolve(0);

  constructor(
    private readonly t: TestServer,
    private readonly tenant: Tenant,
    readonly name: string,
  ) {}

  async start(): Promise<this> {
    const r = await this.t.call('POST', ENROLL_PATH, {
      token: this.tenant.enrollToken,
      body: {
        subscriptionId: this.tenant.subscriptionId,
        resourceGroup: RG,
        name: this.name,
        location: LOCATION,
        hostname: this.name,
        captureRoot: '/var/captures',
      },
    });
    expect(r.status).toBe(201);
    this.credential = r.body.credential as string;
    this.vmId = r.body.agentId as string;
    const socket = await openChannel(this.t, this.credential);
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', (code) => resolve(code)));
    const welcomed = new Promise<void>((resolve) => {
      socket.on('message', (data: Buffer, isBinary) => {
        if (isBinary) return;
        const m = JSON.parse(data.toString('utf8')) as Record<string, string>;
        if (m['type'] === 'welcome') resolve();
        if (m['type'] === 'start') {
          const assignment = m['assignment'] as unknown as { sessionId: string };
          this.#send({
            type: 'started',
            sessionId: assignment.sessionId,
            startTime: new Date().toISOString(),
          });
        }
        if (m['type'] === 'streamStart') {
          this.streams.add(m['streamId']!);
          const header = encodeFileHeader({
            byteOrder: 'LE',
            precision: 'micro',
            versionMajor: 2,
            versionMinor: 4,
            snaplen: 262144,
            linkType: 1,
          });
          socket.send(Buffer.concat([Buffer.from(m['streamId']!, 'ascii'), header]));
        }
        if (m['type'] === 'streamStop') this.stopped.add(m['streamId']!);
      });
    });
    this.#send({
      type: 'hello',
      protocolVersion: CHANNEL_PROTOCOL_VERSION,
      agentVersion: 'holding',
      hostname: this.name,
      captureRoot: '/var/captures',
      sessions: [],
    });
    await welcomed;
    return this;
  }

  #send(message: Record<string, unknown>): void {
    this.socket?.send(JSON.stringify(message));
  }

  close(): void {
    this.socket?.terminate();
  }
}

function wsUrl(t: TestServer, path: string): URL {
  const url = new URL(path, t.url);
  url.protocol = 'ws:';
  return url;
}

function openChannel(t: TestServer, credential: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(t, CHANNEL_PATH), {
      headers: { authorization: `Bearer ${credential}` },
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) =>
      reject(new Error(`channel upgrade answered ${res.statusCode}`)),
    );
  });
}

/** Opens a live stream; resolves once the pcap header has arrived. */
function openStream(
  t: TestServer,
  path: string,
  token: string,
): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(t, `${path}/stream?api-version=${API}`), {
      headers: { authorization: `Bearer ${token}` },
    });
    const closed = new Promise<{ code: number; reason: string }>((done) =>
      ws.once('close', (code, reason) => done({ code, reason: reason.toString() })),
    );
    ws.once('message', () => resolve({ ws, closed }));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      reject(new Error(`stream upgrade answered ${res.statusCode}`));
    });
  });
}

const streamStatus = (t: TestServer, path: string, token: string) =>
  upgradeStatus(t.url, `${path}/stream?api-version=${API}`, token);

interface RawAnswer {
  /** The status line's code, 0 if the server sent nothing. */
  readonly status: number;
  readonly text: string;
  /** Milliseconds from connecting until the server closed the connection. */
  readonly closedAfterMs: number;
}

/**
 * A WebSocket upgrade request written by hand over TCP, optionally followed at once by
 * `payload` (an attacker's unfinished frame); resolves when the server closes the connection.
 */
function rawUpgrade(
  t: TestServer,
  path: string,
  options: { token?: string; payload?: Buffer; timeoutMs?: number } = {},
): Promise<RawAnswer> {
  const { port } = new URL(t.url);
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${path}: the server kept the connection open`));
    }, options.timeoutMs ?? 10_000);
    socket.on('data', (d: Buffer) => chunks.push(d));
    // The server may reset a connection whose peer is still sending: that is a close too.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, text, closedAfterMs: Date.now() - started });
    });
    socket.write(
      [
        `GET ${path} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${Buffer.from('0123456789abcdef').toString('base64')}`,
        ...(options.token ? [`Authorization: Bearer ${options.token}`] : []),
        '',
        '',
      ].join('\r\n'),
    );
    if (options.payload) socket.write(options.payload);
  });
}

/** The head of one masked binary frame announcing `length` bytes (64-bit length form). */
function frameHead(length: number): Buffer {
  const head = Buffer.alloc(14);
  head[0] = 0x82;
  head[1] = 0x80 | 127;
  head.writeBigUInt64BE(BigInt(length), 2);
  head.writeUInt32BE(0x01020304, 10);
  return head;
}

/** One HTTP request over node:http, so that the Host header can be forged. */
function callWithHost(
  t: TestServer,
  method: string,
  pathAndQuery: string,
  host: string,
  options: { token?: string; body?: unknown } = {},
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}> {
  const { port } = new URL(t.url);
  const body = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: Number(port),
        method,
        path: pathAndQuery,
        headers: {
          host,
          'x-forwarded-host': host,
          'x-forwarded-proto': 'https',
          authorization: `Bearer ${options.token ?? t.adminToken}`,
          ...(body === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const captureBody = (sub: string, vm: string, file: string) => ({
  properties: {
    target: vmId(sub, RG, vm),
    storageLocation: { filePath: `/var/captures/${file}.cap` },
  },
});

// ---- the shared server ------------------------------------------------------------------

let t: TestServer;
let tenant: Tenant;
let agent: HoldingAgent;
const pc = (name: string) => capturePath(tenant.subscriptionId, NW_RG, NW, name);

async function runningCapture(name: string, on = agent): Promise<string> {
  const path = pc(name);
  const put = await t.call('PUT', `${path}?api-version=${API}`, {
    token: tenant.contributor,
    body: captureBody(tenant.subscriptionId, on.name, name),
  });
  expect(put.status).toBe(201);
  await waitFor(
    () => t.call('POST', `${path}/queryStatus?api-version=${API}`),
    (r) => r.body?.packetCaptureStatus === 'Running',
  );
  return path;
}

async function newToken(role: 'Reader' | 'Contributor'): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', `/api/v1/subscriptions/${tenant.subscriptionId}/tokens`, {
    token: tenant.owner,
    body: { role },
  });
  expect(r.status).toBe(201);
  return { id: r.body.tokenId as string, token: r.body.token as string };
}

beforeAll(async () => {
  t = await startTestServer({ webSockets: { maxPerToken: 2 } });
  tenant = await createTenant(t, 'attack');
  agent = await new HoldingAgent(t, tenant, 'vm-hold').start();
});

afterAll(async () => {
  agent?.close();
  await t?.close();
});

describe('WebSocket upgrades', () => {
  it('only the agent channel and live streams upgrade: health, unknown paths and API routes answer HTTP and hang up', async () => {
    const sub = tenant.subscriptionId;
    const attempts: [string, string | undefined, number][] = [
      ['/healthz', undefined, 404],
      ['/no/such/route', undefined, 404],
      ['/metrics', t.adminToken, 404],
      ['/api/v1/subscriptions', t.adminToken, 404],
      [`${pc('whatever')}?api-version=${API}`, tenant.reader, 404],
      [
        `/subscriptions/${sub}/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01`,
        tenant.reader,
        404,
      ],
      // The WebSocket routes themselves, without valid credentials: refused before upgrading.
      [CHANNEL_PATH, undefined, 401],
      [CHANNEL_PATH, tenant.owner, 401],
      [`${pc('whatever')}/stream?api-version=${API}`, undefined, 401],
    ];
    const answers = await Promise.all(
      attempts.flatMap(([path, token]) =>
        Array.from({ length: 10 }, () => rawUpgrade(t, path, token ? { token } : {})),
      ),
    );
    answers.forEach((answer, i) => {
      const [path, , status] = attempts[Math.floor(i / 10)]!;
      expect(answer.status, `${path}: ${answer.text.slice(0, 200)}`).toBe(status);
      expect(answer.text).not.toContain('101 Switching Protocols');
      expect(answer.text).toMatch(/"error":\{"code":"(NotFound|AuthenticationFailed)"/);
    });
    expect((await t.call('GET', '/healthz', { token: '' })).status).toBe(200);
  });

  it('a peer that sends 15 MiB of an unfinished frame is cut off, not buffered', async () => {
    const payload = Buffer.concat([frameHead(15 * MIB), Buffer.alloc(15 * MIB, 0x61)]);
    const paths = [
      '/healthz',
      '/nothing-here',
      CHANNEL_PATH,
      `${pc('x')}/stream?api-version=${API}`,
    ];
    const rssBefore = process.memoryUsage().rss;
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => rawUpgrade(t, paths[i % paths.length]!, { payload })),
    );
    const rssAfter = process.memoryUsage().rss;
    for (const answer of answers) {
      expect(answer.text).not.toContain('101 Switching Protocols');
      expect(answer.closedAfterMs).toBeLessThan(5000);
    }
    // 40 × 15 MiB would be 600 MiB held by the server (client and server share this process;
    // the client's payload is one buffer written to every socket).
    expect(rssAfter - rssBefore).toBeLessThan(150 * MIB);
    expect((await t.call('GET', '/healthz', { token: '' })).status).toBe(200);
  });

  it('a viewer frame larger than 1 KiB closes the stream with 1009 (it only ever sends control frames)', async () => {
    const path = await runningCapture('pc-big-frame');
    const viewer = await openStream(t, path, tenant.reader);
    viewer.ws.send(Buffer.alloc(64 * 1024));
    const { code } = await viewer.closed;
    expect(code).toBe(1009);
  });

  it('a token has at most 2 sockets here (the server option); the next is refused with 429 before upgrading', async () => {
    const path = await runningCapture('pc-per-token');
    const { id, token } = await newToken('Reader');
    const first = await openStream(t, path, token);
    const second = await openStream(t, path, token);
    expect(await streamStatus(t, path, token)).toBe(429);
    first.ws.close();
    await first.closed;
    await waitFor(
      () => Promise.resolve(t.server.sockets.openCount({ kind: 'token', tokenId: id })),
      (n) => n === 1,
    );
    // Closing one frees its place.
    const third = await openStream(t, path, token);
    second.ws.close();
    third.ws.close();
  });

  it('upgrade requests beyond the in-flight cap are refused with 429 before routing', async () => {
    const capped = await startTestServer({ webSockets: { maxPendingPerAddress: 0 } });
    try {
      const answer = await rawUpgrade(capped, CHANNEL_PATH, { token: 'wwa_whatever' });
      expect(answer.status).toBe(429);
      expect(answer.text).toContain('"code":"TooManyRequests"');
      expect(answer.text).toMatch(/Retry-After: 1/i);
    } finally {
      await capped.close();
    }
  });
});

describe('revocation and deletion close what they opened', () => {
  it('revoking a Reader token ends its live stream at once; the token opens nothing more', async () => {
    const path = await runningCapture('pc-revoke');
    const reader = await newToken('Reader');
    // Authenticate once through the API so the token sits in the authenticator's cache.
    expect(
      (await t.call('GET', `${path}?api-version=${API}`, { token: reader.token })).status,
    ).toBe(200);
    const viewer = await openStream(t, path, reader.token);
    const streamsBefore = agent.stopped.size;
    const revoked = await t.call(
      'DELETE',
      `/api/v1/subscriptions/${tenant.subscriptionId}/tokens/${reader.id}`,
      { token: tenant.owner },
    );
    expect(revoked.status).toBe(204);
    const { code, reason } = await viewer.closed;
    expect(code).toBe(1008);
    expect(reason).toBe('token revoked');
    // The agent is told to stop reading for the viewer.
    await waitFor(
      () => Promise.resolve(agent.stopped.size),
      (n) => n > streamsBefore,
    );
    const again = await t.call('GET', `${path}?api-version=${API}`, { token: reader.token });
    expect(again.status).toBe(401);
    expect(await streamStatus(t, path, reader.token)).toBe(401);
  });

  it("deleting a VM closes its agent's channel at once, and the credential opens no other", async () => {
    const doomed = await new HoldingAgent(t, tenant, 'vm-doomed').start();
    const deleted = await t.call(
      'DELETE',
      `${vmId(tenant.subscriptionId, RG, 'vm-doomed')}?api-version=2024-07-01`,
      { token: tenant.contributor },
    );
    expect(deleted.status).toBe(200);
    expect(await doomed.closed).toBe(1008);
    await expect(openChannel(t, doomed.credential)).rejects.toThrow(/401/);
  });
});

describe('absolute URLs', () => {
  it('a forged Host header appears in no header or body: polling URLs and nextLink use the public URL', async () => {
    const evil = 'evil.example:666';
    const sub = tenant.subscriptionId;
    const seen: string[] = [];
    const call = async (method: string, path: string, body?: unknown) => {
      const r = await callWithHost(t, method, path, evil, body === undefined ? {} : { body });
      seen.push(JSON.stringify(r.headers), r.text);
      return r;
    };
    const path = pc('pc-host');
    const put = await call(
      'PUT',
      `${path}?api-version=${API}`,
      captureBody(sub, agent.name, 'pc-host'),
    );
    expect(put.status).toBe(201);
    expect(put.headers['azure-asyncoperation']).toMatch(new RegExp(`^${t.url}/subscriptions/`));
    await waitFor(
      () => t.call('POST', `${path}/queryStatus?api-version=${API}`),
      (r) => r.body?.packetCaptureStatus === 'Running',
    );
    await call(
      'PUT',
      `${pc('pc-host-2')}?api-version=${API}`,
      captureBody(sub, agent.name, 'pc-host-2'),
    );
    const stop = await call('POST', `${path}/stop?api-version=${API}`);
    expect(stop.status).toBe(202);
    expect(stop.headers['location']).toMatch(new RegExp(`^${t.url}/subscriptions/`));
    const poll = await call('GET', (stop.headers['location'] as string).slice(t.url.length));
    expect([200, 202]).toContain(poll.status);
    const list = await call(
      'GET',
      `${path.slice(0, path.lastIndexOf('/'))}?api-version=${API}&$top=1`,
    );
    expect(JSON.parse(list.text).nextLink).toMatch(new RegExp(`^${t.url}/subscriptions/`));
    const audit = await call('GET', `/api/v1/subscriptions/${sub}/audit?$top=1`);
    expect(JSON.parse(audit.text).nextLink).toMatch(new RegExp(`^${t.url}/api/v1/`));
    for (const text of seen) expect(text).not.toContain('evil.example');
  });

  it('with a configured public URL, every absolute URL starts with it', async () => {
    const publicUrl = 'https://wirewatch.example.net:8443/ww';
    const other = await startTestServer({ publicUrl: `${publicUrl}/` });
    try {
      const sub = (await createTenant(other, 'public-url')).subscriptionId;
      const r = await callWithHost(
        other,
        'GET',
        `/api/v1/subscriptions/${sub}/audit?$top=1`,
        'evil.example',
      );
      expect(JSON.parse(r.text).nextLink).toMatch(
        /^https:\/\/wirewatch\.example\.net:8443\/ww\/api\/v1\/subscriptions\//,
      );
    } finally {
      await other.close();
    }
  });

  it('a malformed --public-url is refused at start, naming the option', async () => {
    for (const bad of [
      'not a url',
      'ftp://x.example',
      'https://u:p@x.example',
      'https://x.example/?q=1',
    ]) {
      await expect(startTestServer({ publicUrl: bad })).rejects.toThrow(/--public-url/);
    }
  });
});

describe('rate limits', () => {
  it('per token: a burst, then 429 TooManyRequests with Retry-After; other tokens unaffected; time refills', async () => {
    let now = 0;
    const limited = await startTestServer({ rateLimit: 1, limiterClock: () => now });
    try {
      const sub = await limited.call('POST', '/api/v1/subscriptions', {
        body: { displayName: 'x' },
      });
      expect(sub.status).toBe(201);
      const owner = await limited.call(
        'POST',
        `/api/v1/subscriptions/${sub.body.subscriptionId as string}/tokens`,
        { body: { role: 'Owner' } },
      );
      // --rate-limit 1: bursts of 10. The admin token used 2 of its 10 above.
      const list = () => limited.call('GET', '/api/v1/subscriptions');
      for (let i = 0; i < 8; i++) expect((await list()).status).toBe(200);
      const refused = await list();
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.error.code).toBe('TooManyRequests');
      // Another token has its own bucket.
      expect(
        (await limited.call('GET', '/api/v1/subscriptions', { token: owner.body.token as string }))
          .status,
      ).toBe(200);
      now += 999;
      expect((await list()).status).toBe(429);
      now += 1;
      expect((await list()).status).toBe(200);
      expect((await list()).status).toBe(429);
    } finally {
      await limited.close();
    }
  });

  it("per address: failed logins have their own bucket; the address's agents and health checks are not refused for them", async () => {
    let now = 0;
    const limited = await startTestServer({
      anonymousRateLimit: 1,
      rateLimit: 0,
      limiterClock: () => now,
    });
    try {
      const owner = await createTenant(limited, 'failed-logins');
      // --anonymous-rate-limit 1: bursts of 10 failed logins; API tokens, an agent's
      // credential and an enrollment token all count.
      for (let i = 0; i < 8; i++) {
        expect(
          (await limited.call('GET', '/api/v1/subscriptions', { token: 'wwt_guess' })).status,
        ).toBe(401);
      }
      expect((await rawUpgrade(limited, CHANNEL_PATH, { token: 'wwa_guess' })).status).toBe(401);
      expect(
        (await limited.call('POST', ENROLL_PATH, { token: 'wwenroll_guess', body: {} })).status,
      ).toBe(401);
      const refused = await limited.call('GET', '/api/v1/subscriptions', { token: 'wwt_guess' });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body.error.code).toBe('TooManyRequests');
      expect((await rawUpgrade(limited, CHANNEL_PATH, { token: 'wwa_guess' })).status).toBe(429);
      // Health checks are not limited at all.
      for (let i = 0; i < 30; i++) {
        expect((await limited.call('GET', '/healthz', { token: '' })).status).toBe(200);
      }
      // A real agent from the same address enrolls and connects.
      const real = await new HoldingAgent(limited, owner, 'vm-after-guessing').start();
      expect(real.socket?.readyState).toBe(WebSocket.OPEN);
      real.close();
      await real.closed;
      // And reconnects with its credential, as often as its own bucket allows.
      for (let i = 0; i < 3; i++) (await openChannel(limited, real.credential)).terminate();
      // A valid API token is not an anonymous request (and --rate-limit 0 turned its limit off).
      for (let i = 0; i < 30; i++) {
        expect((await limited.call('GET', '/api/v1/subscriptions')).status).toBe(200);
      }
      expect(
        (await limited.call('GET', '/api/v1/subscriptions', { token: 'wwt_guess' })).status,
      ).toBe(429);
      now += 2000;
      expect(
        (await limited.call('GET', '/api/v1/subscriptions', { token: 'wwt_guess' })).status,
      ).toBe(401);
    } finally {
      await limited.close();
    }
  });

  it("per address: agents' enrollments and connects have a bucket of their own", async () => {
    let now = 0;
    const limited = await startTestServer({
      anonymousRateLimit: 1,
      rateLimit: 0,
      limiterClock: () => now,
    });
    try {
      const owner = await createTenant(limited, 'agent-bucket');
      const agent = await new HoldingAgent(limited, owner, 'vm-flapping').start();
      agent.close();
      await agent.closed;
      // The enrollment and the first connect took 2 of 10.
      for (let i = 0; i < 8; i++) (await openChannel(limited, agent.credential)).terminate();
      await expect(openChannel(limited, agent.credential)).rejects.toThrow(/429/);
      // Failed logins from the address are still answered 401: another bucket.
      expect(
        (await limited.call('GET', '/api/v1/subscriptions', { token: 'wwt_guess' })).status,
      ).toBe(401);
      now += 1000;
      (await openChannel(limited, agent.credential)).terminate();
    } finally {
      await limited.close();
    }
  });

  it('--trust-proxy: behind a trusted proxy, X-Forwarded-For names the address; otherwise it is ignored', async () => {
    // The limiters' clock stands still: no bucket refills during the test.
    const guess = (server: TestServer, forwardedFor: string) =>
      server.call('GET', '/api/v1/subscriptions', {
        token: 'wwt_guess',
        headers: { 'x-forwarded-for': forwardedFor },
      });
    const behind = await startTestServer({
      anonymousRateLimit: 1,
      rateLimit: 0,
      limiterClock: () => 0,
      trustProxy: ['127.0.0.1'],
    });
    const direct = await startTestServer({
      anonymousRateLimit: 1,
      rateLimit: 0,
      limiterClock: () => 0,
    });
    try {
      for (let i = 0; i < 10; i++) {
        // A client may prepend what it likes; the proxy appends the address it saw.
        expect((await guess(behind, `10.9.9.${i}, 203.0.113.7`)).status).toBe(401);
        expect((await guess(direct, `203.0.113.${i}`)).status).toBe(401);
      }
      expect((await guess(behind, '203.0.113.7')).status).toBe(429);
      expect((await guess(behind, '203.0.113.8')).status).toBe(401);
      // Not behind a trusted proxy: the header changes nothing, the peer is the address.
      expect((await guess(direct, '203.0.113.99')).status).toBe(429);
    } finally {
      await behind.close();
      await direct.close();
    }
  });
});

describe('an empty JSON body is no body', () => {
  it('queryStatus and stop accept Content-Type: application/json with nothing after it; a PUT still needs its body', async () => {
    const path = await runningCapture('pc-empty-body');
    const headers = { 'content-type': 'application/json' };
    const status = await t.call('POST', `${path}/queryStatus?api-version=${API}`, {
      token: tenant.reader,
      raw: '',
      headers,
    });
    expect(status.status).toBe(200);
    expect(status.body.packetCaptureStatus).toBe('Running');
    const stop = await t.call('POST', `${path}/stop?api-version=${API}`, {
      token: tenant.contributor,
      raw: '',
      headers,
    });
    expect(stop.status).toBe(202);
    const put = await t.call('PUT', `${pc('pc-no-body')}?api-version=${API}`, {
      token: tenant.contributor,
      raw: '',
      headers,
    });
    expect(put.status).toBe(400);
    expect(put.body.error.code).toBe('InvalidRequestContent');
    expect(put.body.error.target).toBe('body');
    const notJson = await t.call('POST', `${path}/queryStatus?api-version=${API}`, {
      token: tenant.reader,
      raw: '{',
      headers,
    });
    expect(notJson.status).toBe(400);
  });
});
