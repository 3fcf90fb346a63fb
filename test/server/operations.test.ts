/**
 * Running the server: /healthz, /metrics, request ids, the 404 of unknown routes, JSON logs that
 * never hold a secret, and a 5xx that names nothing but its request id. A real server on
 * loopback with a SYNTHETIC agent (test/lab/synthetic-agent.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENROLL_PATH } from '../../src/model/channel.js';
import type { SyntheticAgent } from '../lab/synthetic-agent.js';
import {
  API,
  capturePath,
  createTenant,
  startServerWithAgent,
  startTestServer,
  syntheticAgentOf,
  vmId,
  waitFor,
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const RG = 'rg1';
const NW_RG = 'NetworkWatcherRG';
const NW = 'NetworkWatcher_westeurope';

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition. */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function sample(samples: readonly Sample[], name: string, labels: Record<string, string> = {}) {
  return samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

function captureBody(sub: string, name: string) {
  return {
    properties: {
      target: vmId(sub, RG, 'vm1'),
      storageLocation: { filePath: `/var/captures/${name}.cap` },
    },
  };
}

/** The agent of VM vm1 in every test here. */
const VM1 = { resourceGroup: RG, name: 'vm1', progressIntervalMs: 200 };

describe('health, metrics, request ids, unknown routes', () => {
  let t: TestServer;
  let tenant: Tenant;
  let agent: SyntheticAgent;
  const url = (name: string, suffix = '') =>
    `${capturePath(tenant.subscriptionId, NW_RG, NW, name)}${suffix}?api-version=${API}`;
  const metrics = async () => {
    const r = await t.call('GET', '/metrics');
    expect(r.status).toBe(200);
    return parseMetrics(r.text);
  };
  const gauge = async (name: string, labels: Record<string, string> = {}) =>
    sample(await metrics(), name, labels)?.value;

  beforeAll(async () => {
    ({ t, tenant, agent } = await startServerWithAgent({ agent: VM1 }));
  });

  afterAll(async () => {
    await agent?.close();
    await t?.close();
  });

  it('/healthz answers {"status":"ok"} without a token (and with any)', async () => {
    for (const token of ['', 'garbage', t.adminToken]) {
      const r = await t.call('GET', '/healthz', { token });
      expect(r.status).toBe(200);
      expect(r.body).toEqual({ status: 'ok' });
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    }
  });

  it('/metrics needs the admin token', async () => {
    for (const token of ['', 'garbage', tenant.enrollToken]) {
      const r = await t.call('GET', '/metrics', { token });
      expect([r.status, r.body?.error?.code]).toEqual([401, 'AuthenticationFailed']);
    }
    for (const token of [tenant.reader, tenant.contributor, tenant.owner]) {
      const r = await t.call('GET', '/metrics', { token });
      expect([r.status, r.body?.error?.code]).toEqual([403, 'AuthorizationFailed']);
      expect(r.text).not.toContain('wirewatch_');
    }
    const r = await t.call('GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(r.text).toContain('# TYPE wirewatch_sessions gauge');
  });

  it('wirewatch_sessions{status} counts sessions by status', async () => {
    let s = await metrics();
    for (const status of ['NotStarted', 'Running', 'Stopped', 'Error']) {
      expect(sample(s, 'wirewatch_sessions', { status })?.value).toBe(0);
    }
    expect(
      (await t.call('PUT', url('m1'), { body: captureBody(tenant.subscriptionId, 'm1') })).status,
    ).toBe(201);
    await waitFor(
      () => gauge('wirewatch_sessions', { status: 'Running' }),
      (v) => v === 1,
    );
    expect((await t.call('POST', url('m1', '/stop'))).status).toBe(202);
    s = await waitFor(
      metrics,
      (x) => sample(x, 'wirewatch_sessions', { status: 'Stopped' })?.value === 1,
    );
    expect(sample(s, 'wirewatch_sessions', { status: 'Running' })?.value).toBe(0);
    expect(sample(s, 'wirewatch_sessions', { status: 'NotStarted' })?.value).toBe(0);
  });

  it('wirewatch_agents_connected goes 1 → 0 when the agent disconnects, and back', async () => {
    expect(await gauge('wirewatch_agents_connected')).toBe(1);
    await agent.disconnect();
    await waitFor(
      () => gauge('wirewatch_agents_connected'),
      (v) => v === 0,
    );
    await agent.connect();
    expect(await gauge('wirewatch_agents_connected')).toBe(1);
  });

  it('wirewatch_http_request_duration_seconds is a histogram by method, route and status', async () => {
    for (let i = 0; i < 3; i++) await t.call('GET', '/healthz', { token: '' });
    await t.call('GET', url('m1'), { token: tenant.reader });
    const r = await t.call('GET', '/metrics');
    expect(r.text).toContain('# TYPE wirewatch_http_request_duration_seconds histogram');
    const s = parseMetrics(r.text);
    const health = { method: 'GET', route: '/healthz', status_code: '200' };
    const buckets = s.filter(
      (x) =>
        x.name === 'wirewatch_http_request_duration_seconds_bucket' &&
        Object.entries(health).every(([k, v]) => x.labels[k] === v),
    );
    expect(buckets.map((b) => b.labels['le'])).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '+Inf',
    ]);
    // Cumulative, ending at the count.
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    }
    const count = sample(s, 'wirewatch_http_request_duration_seconds_count', health)!.value;
    expect(count).toBeGreaterThanOrEqual(4);
    expect(buckets.at(-1)!.value).toBe(count);
    expect(sample(s, 'wirewatch_http_request_duration_seconds_sum', health)!.value).toBeGreaterThan(
      0,
    );
    // Routes are labelled by their pattern, so no id (and no tenant) ends up in a label.
    const capture = sample(s, 'wirewatch_http_request_duration_seconds_count', {
      method: 'GET',
      status_code: '200',
      route:
        '/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/providers/Microsoft.Network/networkWatchers/:networkWatcherName/packetCaptures/:packetCaptureName',
    });
    expect(capture?.value).toBeGreaterThanOrEqual(1);
  });

  it('every response carries an x-ms-request-id header', async () => {
    const sub = tenant.subscriptionId;
    const replies: [string, Reply][] = [
      ['healthz', await t.call('GET', '/healthz', { token: '' })],
      ['metrics', await t.call('GET', '/metrics')],
      ['401', await t.call('GET', '/api/v1/subscriptions', { token: '' })],
      ['403', await t.call('GET', '/metrics', { token: tenant.reader })],
      ['404 route', await t.call('GET', '/no/such/route')],
      ['404 resource', await t.call('GET', url('nope'), { token: tenant.reader })],
      ['400', await t.call('GET', url('m1').split('?')[0]!, { token: tenant.reader })],
      [
        '201',
        await t.call('PUT', url('rid'), {
          token: tenant.contributor,
          body: captureBody(sub, 'rid'),
        }),
      ],
      ['200', await t.call('POST', url('rid', '/queryStatus'), { token: tenant.reader })],
      ['202', await t.call('POST', url('rid', '/stop'), { token: tenant.contributor })],
      [
        '415',
        await t.call('PUT', url('x'), {
          token: tenant.contributor,
          raw: 'a=b',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        }),
      ],
      [
        'enroll 401',
        await t.call('POST', ENROLL_PATH, {
          token: 'wwe_nope',
          body: {
            subscriptionId: sub,
            resourceGroup: RG,
            name: 'vm9',
            location: 'westeurope',
            hostname: 'h',
            captureRoot: '/var/captures',
          },
        }),
      ],
    ];
    await waitFor(
      () => t.call('POST', url('rid', '/queryStatus'), { token: tenant.reader }),
      (x) => x.body?.packetCaptureStatus === 'Stopped',
    );
    replies.push(['204', await t.call('DELETE', url('rid'), { token: tenant.contributor })]);
    expect(replies.map(([what, r]) => [what, r.status])).toEqual([
      ['healthz', 200],
      ['metrics', 200],
      ['401', 401],
      ['403', 403],
      ['404 route', 404],
      ['404 resource', 404],
      ['400', 400],
      ['201', 201],
      ['200', 200],
      ['202', 202],
      ['415', 415],
      ['enroll 401', 401],
      ['204', 204],
    ]);
    const ids = replies.map(([, r]) => r.headers.get('x-ms-request-id'));
    for (const id of ids) expect(id).toMatch(/^[\w-]{1,64}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('x-ms-request-id echoes a well-formed x-ms-client-request-id, and only a well-formed one', async () => {
    const given = await t.call('GET', '/healthz', {
      headers: { 'x-ms-client-request-id': 'client-req-42' },
    });
    expect(given.headers.get('x-ms-request-id')).toBe('client-req-42');
    for (const bad of ['has spaces in it', 'x'.repeat(65), 'semi;colon']) {
      const r = await t.call('GET', '/healthz', { headers: { 'x-ms-client-request-id': bad } });
      const id = r.headers.get('x-ms-request-id');
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("an unknown route answers 404 NotFound in Azure's error body", async () => {
    for (const [method, path] of [
      ['GET', '/no/such/route'],
      ['POST', '/api/v1/nothing-here'],
      ['PATCH', url('m1')],
      [
        'GET',
        `/subscriptions/${tenant.subscriptionId}/providers/Microsoft.Storage/x?api-version=${API}`,
      ],
    ] as const) {
      const r = await t.call(method, path);
      expect(r.status).toBe(404);
      expect(r.body).toEqual({
        error: { code: 'NotFound', message: `No route for ${method} ${path.split('?')[0]!}` },
      });
      expect(r.headers.get('x-ms-error-code')).toBe('NotFound');
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    }
    // Without a token, the server tells nothing about its routes: 401 like everything else.
    const anonymous = await t.call('GET', '/no/such/route', { token: '' });
    expect([anonymous.status, anonymous.body?.error?.code]).toEqual([401, 'AuthenticationFailed']);
  });

  it('metric labels hold no ids, not even of unmatched or refused requests', async () => {
    const sub = tenant.subscriptionId;
    await t.call('GET', `/subscriptions/${sub}/no/such/thing?api-version=${API}`);
    await t.call('GET', `/subscriptions/${sub}/no/such/thing`, { token: '' });
    await t.call('GET', url('no-such-capture'), { token: tenant.reader });
    const r = await t.call('GET', '/metrics');
    expect(r.text).not.toContain(sub);
    expect(r.text).not.toContain('no-such');
    const routes = new Set(
      parseMetrics(r.text)
        .filter((x) => x.name === 'wirewatch_http_request_duration_seconds_count')
        .map((x) => x.labels['route']),
    );
    for (const route of routes) expect(route).toMatch(/^(\/[\w.:-]*)+$|^unmatched$/);
  });
});

describe('logs', () => {
  let t: TestServer;
  const lines: string[] = [];
  const secrets: string[] = [];
  let agent: SyntheticAgent | undefined;
  const requestIds: string[] = [];

  beforeAll(async () => {
    t = await startTestServer({
      logger: {
        level: 'info',
        stream: {
          write(line: string) {
            lines.push(line);
          },
        },
      },
    });
  });

  afterAll(async () => {
    await agent?.close();
    await t?.close();
  });

  const remember = (r: Reply) => {
    const id = r.headers.get('x-ms-request-id');
    if (id) requestIds.push(id);
    return r;
  };

  it('after requests with tokens, an enrollment and a capture, the log is JSON with request ids and holds no secret', async () => {
    secrets.push(t.adminToken);
    const tenant = await createTenant(t, 'logged');
    const sub = tenant.subscriptionId;
    secrets.push(tenant.owner, tenant.contributor, tenant.reader, tenant.enrollToken);
    agent = syntheticAgentOf(t, tenant, VM1);
    await agent.connect();
    secrets.push(agent.credential!);

    const extra = remember(
      await t.call('POST', `/api/v1/subscriptions/${sub}/tokens`, {
        token: tenant.owner,
        body: { role: 'Reader' },
      }),
    );
    expect(extra.status).toBe(201);
    secrets.push(extra.body.token);
    const enrollment = remember(
      await t.call('POST', `/api/v1/subscriptions/${sub}/enrollmentTokens`, {
        token: tenant.owner,
        body: { expiresInHours: 1 },
      }),
    );
    expect(enrollment.status).toBe(201);
    secrets.push(enrollment.body.token);
    // A second VM enrolls with the new enrollment token (its credential is a secret too).
    const second = remember(
      await t.call('POST', ENROLL_PATH, {
        token: enrollment.body.token,
        body: {
          subscriptionId: sub,
          resourceGroup: RG,
          name: 'vm2',
          location: 'westeurope',
          hostname: 'vm2',
          captureRoot: '/var/captures',
        },
      }),
    );
    expect(second.status).toBe(201);
    secrets.push(second.body.credential);
    remember(
      await t.call('DELETE', `/api/v1/subscriptions/${sub}/tokens/${extra.body.tokenId}`, {
        token: tenant.owner,
      }),
    );
    // Refused ones: revoked, garbage, an enrollment token as an API token, a wrong enrollment.
    const garbage = 'wwt_thisIsNotARealTokenButStillMustNotBeLogged0123456789';
    secrets.push(garbage);
    expect(
      remember(await t.call('GET', '/api/v1/subscriptions', { token: extra.body.token })).status,
    ).toBe(401);
    expect(remember(await t.call('GET', '/api/v1/subscriptions', { token: garbage })).status).toBe(
      401,
    );
    expect(
      remember(await t.call('GET', '/api/v1/subscriptions', { token: tenant.enrollToken })).status,
    ).toBe(401);
    expect(
      remember(
        await t.call('POST', ENROLL_PATH, {
          token: garbage,
          body: {
            subscriptionId: sub,
            resourceGroup: RG,
            name: 'vm3',
            location: 'westeurope',
            hostname: 'vm3',
            captureRoot: '/var/captures',
          },
        }),
      ).status,
    ).toBe(401);

    const url = (suffix = '') =>
      `${capturePath(sub, NW_RG, NW, 'logged')}${suffix}?api-version=${API}`;
    expect(
      remember(
        await t.call('PUT', url(), {
          token: tenant.contributor,
          body: captureBody(sub, 'logged'),
        }),
      ).status,
    ).toBe(201);
    await waitFor(
      () => t.call('POST', url('/queryStatus'), { token: tenant.reader }),
      (r) => r.body?.packetCaptureStatus === 'Running',
    );
    expect(remember(await t.call('POST', url('/stop'), { token: tenant.contributor })).status).toBe(
      202,
    );
    remember(
      await t.call('GET', '/healthz', {
        headers: { 'x-ms-client-request-id': 'traced-by-client' },
      }),
    );
    await waitFor(
      () => t.call('POST', url('/queryStatus'), { token: tenant.reader }),
      (r) => r.body?.packetCaptureStatus === 'Stopped',
    );

    expect(lines.length).toBeGreaterThan(20);
    const entries = lines.map((line) => {
      expect(line.endsWith('\n')).toBe(true);
      return JSON.parse(line) as Record<string, unknown>;
    });
    for (const e of entries) {
      expect(typeof e['level']).toBe('number');
      expect(typeof e['time']).toBe('number');
      expect(typeof e['msg']).toBe('string');
    }
    // Every request's lines carry its id, the same as the x-ms-request-id it answered with.
    for (const e of entries.filter((x) => 'req' in x || 'res' in x)) {
      expect(typeof e['reqId']).toBe('string');
    }
    for (const id of [...requestIds, 'traced-by-client']) {
      const mine = entries.filter((e) => e['reqId'] === id).map((e) => e['msg']);
      expect(mine).toEqual(expect.arrayContaining(['incoming request', 'request completed']));
    }
    expect(entries.some((e) => e['msg'] === 'agent connected')).toBe(true);

    const text = lines.join('');
    expect(secrets.length).toBeGreaterThanOrEqual(10);
    for (const secret of secrets) {
      expect(text).not.toContain(secret);
      // Nor its random part without the prefix.
      expect(text).not.toContain(secret.slice(secret.indexOf('_') + 1));
    }
    expect(text).not.toMatch(/bearer/i);
  });

  it('a 5xx names its request id and nothing of the cause, which goes to the log', async () => {
    // A real failure: the store is closed under the running server.
    await t.server.store.close();
    const r = await t.call('GET', '/api/v1/subscriptions', {
      headers: { 'x-ms-client-request-id': 'store-gone' },
    });
    expect(r.status).toBe(500);
    expect(r.headers.get('x-ms-request-id')).toBe('store-gone');
    expect(r.body).toEqual({
      error: {
        code: 'InternalServerError',
        message: 'An internal error occurred (request id store-gone)',
      },
    });
    expect(r.headers.get('x-ms-error-code')).toBe('InternalServerError');
    const logged = lines
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => e['reqId'] === 'store-gone' && e['msg'] === 'request failed');
    expect(logged).toHaveLength(1);
    expect(logged[0]!['err']).toMatchObject({
      message: expect.any(String),
      stack: expect.any(String),
    });
  });
});
