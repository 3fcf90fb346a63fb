/**
 * Storage accounts through a real server against a real Azurite: registration (which proves the
 * endpoint and key work), the native list, the ARM reads, refusals (bad connection strings, an
 * endpoint that does not answer, a wrong key, bad names, weak roles, other tenants), the audit
 * log — and that the account key is in no answer and no log line, ever.
 *
 * Azurite runs with a custom account whose key is random for this run (AZURITE_ACCOUNTS), so a
 * leak cannot hide behind a well-known key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { CAPTURE_CONTAINER } from '../../src/blob/blob-names.js';
import {
  createTenant,
  startTestServer,
  type CallOptions,
  type Reply,
  type Tenant,
  type TestServer,
} from '../lab/control-plane.js';

const STORAGE_API = '2023-05-01';
const ACCOUNT = 'wwtestacct';
const KEY = randomBytes(64).toString('base64');
const RG = 'rg-Storage';

let dir: string;
let azurite: Azurite;
let t: TestServer;
let a: Tenant;
let b: Tenant;
const lines: string[] = [];
/** Every answer the server gave in this file. */
const answers: Reply[] = [];

let endpoint: string;
let connectionString: string;

function call(method: string, pathAndQuery: string, options?: CallOptions): Promise<Reply> {
  return t.call(method, pathAndQuery, options).then((r) => {
    answers.push(r);
    return r;
  });
}

const native = (sub: string) => `/api/v1/subscriptions/${sub}/storageAccounts`;
const armId = (sub: string, rg: string, name: string) =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Storage/storageAccounts/${name}`;
const arm = (p: string, version = STORAGE_API) => `${p}?api-version=${version}`;

function register(
  tenant: Tenant,
  body: Record<string, unknown>,
  token = tenant.contributor,
): Promise<Reply> {
  return call('POST', native(tenant.subscriptionId), { token, body });
}

/** A port on loopback that nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-storage-'));
  const before = process.env['AZURITE_ACCOUNTS'];
  process.env['AZURITE_ACCOUNTS'] = `${ACCOUNT}:${KEY}`;
  try {
    azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
  } finally {
    if (before === undefined) delete process.env['AZURITE_ACCOUNTS'];
    else process.env['AZURITE_ACCOUNTS'] = before;
  }
  endpoint = `http://127.0.0.1:${azurite.port}/${ACCOUNT}`;
  connectionString = `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=${endpoint};`;
  t = await startTestServer(
    {
      logger: {
        level: 'trace',
        stream: {
          write(line: string) {
            lines.push(line);
          },
        },
      },
    },
    path.join(dir, 'server'),
  );
  a = await createTenant(t, 'storage-a');
  b = await createTenant(t, 'storage-b');
});

afterAll(async () => {
  await t?.close();
  await azurite?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('registering', () => {
  it('a Contributor registers an account: 201, the container exists, no secret in the answer', async () => {
    const r = await register(a, { name: 'captures1', resourceGroup: RG, connectionString });
    expect(r.status, r.text).toBe(201);
    expect(r.body).toEqual({
      id: armId(a.subscriptionId, RG, 'captures1'),
      name: 'captures1',
      resourceGroup: RG,
      accountName: ACCOUNT,
      blobEndpoint: endpoint,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    const container = new BlobServiceClient(
      endpoint,
      new StorageSharedKeyCredential(ACCOUNT, KEY),
    ).getContainerClient(CAPTURE_CONTAINER);
    expect(await container.exists()).toBe(true);
  });

  it('registering the same name again replaces it: 200, same createdAt', async () => {
    const first = (await call('GET', native(a.subscriptionId), { token: a.reader })).body.value[0];
    const r = await register(a, { name: 'captures1', resourceGroup: RG, connectionString });
    expect(r.status, r.text).toBe(200);
    expect(r.body.createdAt).toBe(first.createdAt);
    // Names compare case-insensitively in the resource group, as in Azure.
    const again = await register(a, {
      name: 'captures1',
      resourceGroup: RG.toUpperCase(),
      connectionString,
    });
    expect(again.status, again.text).toBe(200);
    expect(again.body.resourceGroup).toBe(RG);
  });

  it('an Owner may register too', async () => {
    const r = await register(
      a,
      { name: 'captures2', resourceGroup: 'rg2', connectionString },
      a.owner,
    );
    expect(r.status, r.text).toBe(201);
  });

  it('the list shows accounts without key or connection string', async () => {
    const r = await call('GET', native(a.subscriptionId), { token: a.reader });
    expect(r.status).toBe(200);
    expect(r.body.value.map((v: { name: string }) => v.name)).toEqual(['captures1', 'captures2']);
    for (const v of r.body.value) {
      expect(Object.keys(v).sort()).toEqual([
        'accountName',
        'blobEndpoint',
        'createdAt',
        'id',
        'name',
        'resourceGroup',
      ]);
    }
    expect(r.text).not.toContain(KEY);
    expect(r.text.toLowerCase()).not.toContain('accountkey');
    expect(r.text.toLowerCase()).not.toContain('connectionstring');
  });
});

describe('ARM reads (Microsoft.Storage/storageAccounts)', () => {
  it("GET one: Azure's StorageAccount shape", async () => {
    const r = await call('GET', arm(armId(a.subscriptionId, RG.toLowerCase(), 'CAPTURES1')), {
      token: a.reader,
    });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({
      id: armId(a.subscriptionId, RG, 'captures1'),
      name: 'captures1',
      type: 'Microsoft.Storage/storageAccounts',
      location: 'local',
      kind: 'StorageV2',
      tags: {},
      properties: {
        provisioningState: 'Succeeded',
        creationTime: expect.any(String),
        primaryEndpoints: { blob: `${endpoint}/` },
      },
    });
  });

  it('lists per subscription and per resource group', async () => {
    const all = await call(
      'GET',
      arm(`/subscriptions/${a.subscriptionId}/providers/Microsoft.Storage/storageAccounts`),
      { token: a.reader },
    );
    expect(all.status, all.text).toBe(200);
    expect(all.body.value.map((v: { id: string }) => v.id)).toEqual([
      armId(a.subscriptionId, RG, 'captures1'),
      armId(a.subscriptionId, 'rg2', 'captures2'),
    ]);
    const group = await call(
      'GET',
      arm(
        `/subscriptions/${a.subscriptionId}/resourceGroups/RG2/providers/Microsoft.Storage/storageAccounts`,
      ),
      { token: a.reader },
    );
    expect(group.status, group.text).toBe(200);
    expect(group.body.value.map((v: { name: string }) => v.name)).toEqual(['captures2']);
  });

  it('a name that is not registered: 404 ResourceNotFound', async () => {
    const r = await call('GET', arm(armId(a.subscriptionId, RG, 'nosuchaccount')), {
      token: a.reader,
    });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('ResourceNotFound');
  });

  it("takes Microsoft.Storage's api-versions, not Microsoft.Network's", async () => {
    const id = armId(a.subscriptionId, RG, 'captures1');
    for (const version of ['2021-08-01', '2024-01-01', '2025-06-01']) {
      expect((await call('GET', arm(id, version), { token: a.reader })).status).toBe(200);
    }
    const missing = await call('GET', id, { token: a.reader });
    expect([missing.status, missing.body.error.code]).toEqual([400, 'MissingApiVersionParameter']);
    const network = await call('GET', arm(id, '2025-05-01'), { token: a.reader });
    expect([network.status, network.body.error.code]).toEqual([400, 'InvalidApiVersionParameter']);
    expect(network.body.error.message).toContain('2023-05-01');
  });
});

describe('refused registrations', () => {
  const bad: [string, string, RegExp][] = [
    ['empty', '', /is empty/],
    ['no AccountKey', `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT}`, /AccountKey/],
    ['no AccountName', `AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:1/x`, /AccountName/],
    [
      'a key that is not base64',
      `AccountName=${ACCOUNT};AccountKey=%%%;BlobEndpoint=${'h'}`,
      /AccountKey is not base64/,
    ],
    [
      'a bad endpoint',
      `AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=ftp://x/y`,
      /BlobEndpoint/,
    ],
    ['no protocol', `AccountName=${ACCOUNT};AccountKey=${KEY}`, /DefaultEndpointsProtocol/],
    ['garbage', `this is ${KEY} not a connection string`, /Key=Value|unknown part/],
  ];
  for (const [label, text, message] of bad) {
    it(`${label}: 400 InvalidConnectionString naming the part, never the key`, async () => {
      const r = await register(a, { name: 'badone', resourceGroup: RG, connectionString: text });
      expect(r.status, r.text).toBe(400);
      expect(r.body.error).toEqual({
        code: 'InvalidConnectionString',
        message: expect.stringMatching(message),
        target: 'connectionString',
      });
      expect(r.text).not.toContain(KEY);
      expect(r.text).not.toContain(KEY.slice(0, 20));
    });
  }

  it('an endpoint nobody answers: 400 StorageAccountUnreachable naming the endpoint', async () => {
    const port = await closedPort();
    const r = await register(a, {
      name: 'unreachable',
      resourceGroup: RG,
      connectionString: connectionString.replace(`:${azurite.port}/`, `:${port}/`),
    });
    expect(r.status, r.text).toBe(400);
    expect(r.body.error.code).toBe('StorageAccountUnreachable');
    expect(r.body.error.message).toContain(`127.0.0.1:${port}`);
    expect(r.text).not.toContain(KEY);
  });

  it('a wrong key: 400 StorageAccountAccessDenied', async () => {
    const wrong = randomBytes(64).toString('base64');
    const r = await register(a, {
      name: 'wrongkey',
      resourceGroup: RG,
      connectionString: connectionString.replace(KEY, wrong),
    });
    expect(r.status, r.text).toBe(400);
    expect(r.body.error.code).toBe('StorageAccountAccessDenied');
    expect(r.text).not.toContain(wrong);
  });

  it("an account name that breaks Azure's rule: 400 InvalidResourceName", async () => {
    for (const name of ['ab', 'Upper1', 'with-dash', 'x'.repeat(25), '']) {
      const r = await register(a, { name, resourceGroup: RG, connectionString });
      expect([r.status, r.body.error.code, r.body.error.target]).toEqual([
        400,
        'InvalidResourceName',
        'name',
      ]);
    }
    const rg = await register(a, { name: 'okname', resourceGroup: 'bad/rg', connectionString });
    expect([rg.status, rg.body.error.code]).toEqual([400, 'InvalidResourceName']);
  });

  it('missing fields: 400 InvalidRequestContent', async () => {
    const r = await register(a, { name: 'okname', resourceGroup: RG });
    expect([r.status, r.body.error.code, r.body.error.target]).toEqual([
      400,
      'InvalidRequestContent',
      'connectionString',
    ]);
  });

  it('nothing refused was stored', async () => {
    const r = await call('GET', native(a.subscriptionId), { token: a.reader });
    expect(r.body.value.map((v: { name: string }) => v.name)).toEqual(['captures1', 'captures2']);
  });
});

describe('roles and tenants', () => {
  it('a Reader cannot register or delete: 403 AuthorizationFailed', async () => {
    const r = await register(
      a,
      { name: 'byreader', resourceGroup: RG, connectionString },
      a.reader,
    );
    expect([r.status, r.body.error.code]).toEqual([403, 'AuthorizationFailed']);
    const d = await call('DELETE', `${native(a.subscriptionId)}/${RG}/captures1`, {
      token: a.reader,
    });
    expect([d.status, d.body.error.code]).toEqual([403, 'AuthorizationFailed']);
  });

  it("another tenant's tokens see A's accounts as a subscription that does not exist", async () => {
    const sub = a.subscriptionId;
    for (const token of [b.reader, b.contributor, b.owner]) {
      const requests: [string, string, CallOptions][] = [
        ['GET', native(sub), { token }],
        [
          'POST',
          native(sub),
          { token, body: { name: 'intruder', resourceGroup: RG, connectionString } },
        ],
        ['DELETE', `${native(sub)}/${RG}/captures1`, { token }],
        ['GET', arm(armId(sub, RG, 'captures1')), { token }],
        [
          'GET',
          arm(`/subscriptions/${sub}/providers/Microsoft.Storage/storageAccounts`),
          { token },
        ],
      ];
      for (const [method, p, options] of requests) {
        const r = await call(method, p, options);
        expect([method, p, r.status, r.body?.error?.code]).toEqual([
          method,
          p,
          404,
          'SubscriptionNotFound',
        ]);
        expect(r.text).not.toContain('captures1');
      }
    }
    const own = await call('GET', native(b.subscriptionId), { token: b.reader });
    expect(own.body).toEqual({ value: [] });
    const ownArm = await call(
      'GET',
      arm(`/subscriptions/${b.subscriptionId}/providers/Microsoft.Storage/storageAccounts`),
      { token: b.reader },
    );
    expect(ownArm.body).toEqual({ value: [] });
    expect(
      (await call('GET', arm(armId(b.subscriptionId, RG, 'captures1')), { token: b.reader }))
        .status,
    ).toBe(404);
  });

  it('the admin token reaches any subscription; a made-up one is 404', async () => {
    expect((await call('GET', native(a.subscriptionId))).body.value).toHaveLength(2);
    const r = await call('GET', native(randomUUID()));
    expect([r.status, r.body.error.code]).toEqual([404, 'SubscriptionNotFound']);
  });
});

describe('deleting', () => {
  it('a Contributor deletes: 200, then 204; the ARM read is 404; the blobs stay', async () => {
    const p = `${native(a.subscriptionId)}/rg2/CAPTURES2`;
    expect((await call('DELETE', p, { token: a.contributor })).status).toBe(200);
    expect((await call('DELETE', p, { token: a.contributor })).status).toBe(204);
    const r = await call('GET', arm(armId(a.subscriptionId, 'rg2', 'captures2')), {
      token: a.reader,
    });
    expect(r.status).toBe(404);
    const list = await call('GET', native(a.subscriptionId), { token: a.reader });
    expect(list.body.value.map((v: { name: string }) => v.name)).toEqual(['captures1']);
  });
});

describe('audit', () => {
  it('records create, update and delete with account and endpoint, never the key', async () => {
    const r = await call('GET', `/api/v1/subscriptions/${a.subscriptionId}/audit`, {
      token: a.owner,
    });
    expect(r.status).toBe(200);
    const mine = r.body.value.filter((e: { action: string }) =>
      e.action.startsWith('storageAccount.'),
    );
    expect(mine.map((e: { action: string }) => e.action).reverse()).toEqual([
      'storageAccount.create',
      'storageAccount.update',
      'storageAccount.update',
      'storageAccount.create',
      'storageAccount.delete',
    ]);
    expect(mine[mine.length - 1]).toMatchObject({
      actor: expect.stringMatching(/^token:/),
      resourceId: armId(a.subscriptionId, RG, 'captures1'),
      detail: { accountName: ACCOUNT, blobEndpoint: endpoint },
    });
    for (const e of mine)
      expect(Object.keys(e.detail).sort()).toEqual(['accountName', 'blobEndpoint']);
    expect(r.text).not.toContain(KEY);
    expect(r.text.toLowerCase()).not.toContain('accountkey');
  });
});

describe('no secret leaks', () => {
  it('the account key is in none of the database files (sealed with DIR/secrets.key)', async () => {
    const files = ['wirewatch.db', 'wirewatch.db-wal', 'wirewatch.db-shm'];
    let raw = '';
    for (const file of files) {
      raw += (await readFile(path.join(t.dataDir, file)).catch(() => Buffer.alloc(0))).toString(
        'latin1',
      );
    }
    // The registrations above are in there (their endpoint is), their key is not.
    expect(raw).toContain(endpoint);
    expect(raw).not.toContain(KEY);
    expect(raw).not.toContain(KEY.slice(0, 24));
    expect(raw.toLowerCase()).not.toContain('accountkey');
  });

  it('a 5xx while registering logs the error, and still no key', async () => {
    await t.server.store.close();
    const r = await register(a, { name: 'late', resourceGroup: RG, connectionString });
    expect(r.status).toBe(500);
    expect(r.text).not.toContain(KEY);
  });

  it('the account key is in no answer the server gave', () => {
    expect(answers.length).toBeGreaterThan(50);
    for (const r of answers) {
      expect(r.text).not.toContain(KEY);
      expect(r.text).not.toContain(KEY.slice(0, 24));
      expect(r.text).not.toContain(encodeURIComponent(KEY));
      for (const [, value] of r.headers) expect(value).not.toContain(KEY.slice(0, 24));
    }
  });

  it('the account key is in no log line (trace level, every request)', () => {
    expect(lines.length).toBeGreaterThan(50);
    expect(lines.some((line) => line.includes('request failed'))).toBe(true);
    const text = lines.join('');
    expect(text).toContain(native(a.subscriptionId));
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(KEY.slice(0, 24));
    expect(text).not.toContain(encodeURIComponent(KEY).slice(0, 24));
    expect(text).not.toContain(JSON.stringify(KEY).slice(1, 25));
    expect(text.toLowerCase()).not.toContain('accountkey');
  });
});
