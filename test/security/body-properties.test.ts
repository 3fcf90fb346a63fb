/**
 * Property-based tests (fast-check) of every API body, through a real server: packet capture PUT
 * (filters, scope, storageLocation, limits, captureSettings), network watcher PUT, and the native
 * bodies (subscriptions, tokens, enrollment tokens, storage accounts, enrollment). Generated
 * bodies mix valid values, values just out of bounds, wrong JSON types and junk. For every one:
 *
 * - no 5xx;
 * - a 4xx is a registered code with its status, and names the field (error.target, or the
 *   message when the body as a whole is wrong);
 * - what a success stored reads back as answered;
 * - a refused request leaves the record it aimed at byte for byte as it was.
 *
 * Runs are bounded (numRuns per property) and seeded from the run's seed, which fast-check
 * prints on failure so a counterexample can be replayed.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENROLL_PATH } from '../../src/model/channel.js';
import { errorCodes, type ErrorCode } from '../../src/model/errors.js';
import { startTestServer, vmId, type Reply, type TestServer } from '../lab/control-plane.js';
import { LOCATION, RG, VM, captureBody, createSide, net, pcPath, type Side } from './world.js';

let t: TestServer;
let a: Side;
let b: Side;
let serial = 0;
const next = () => ++serial;
/** A capture of A that every generated PUT is also aimed at: it must never change. */
const GOOD = 'pc-good';
const ACCOUNT = 'goodacct';
const ACCOUNT_RG = 'rg-storage';

beforeAll(async () => {
  // Rate limits are their own tests (test/server/hold-under-attack.test.ts); here every
  // generated body must reach the route.
  t = await startTestServer({ rateLimit: 0, anonymousRateLimit: 0 });
  a = await createSide(t, 'A');
  b = await createSide(t, 'B');
  const r = await t.call('PUT', net(pcPath(a.sub, GOOD)), { body: captureBody(a.sub, GOOD) });
  expect(r.status, r.text).toBe(201);
  // A registered account to aim refused registrations at. Registering through the API needs a
  // blob endpoint that answers; the record is the store's, so it is written there.
  await t.server.store.putStorageAccount({
    subscriptionId: a.sub,
    resourceGroup: ACCOUNT_RG,
    name: ACCOUNT,
    accountName: 'devstoreaccount1',
    blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
    connectionString: 'UseDevelopmentStorage=true',
    createdAt: new Date(),
  });
});

afterAll(async () => {
  await a?.agent.close();
  await b?.agent.close();
  await t?.close();
});

// ---- what every answer must be ------------------------------------------------------------

/** No 5xx; a 4xx is a registered code with its own status, naming the field or the body. */
function expectSoundAnswer(r: Reply, context: string): void {
  expect(r.status, `${context}: ${r.status} ${r.text}`).toBeLessThan(500);
  if (r.status < 400) return;
  const error = r.body?.error as { code: string; message: string; target?: string } | undefined;
  expect(error, `${context}: ${r.text}`).toBeDefined();
  expect(Object.keys(errorCodes), context).toContain(error!.code);
  expect(errorCodes[error!.code as ErrorCode].status, context).toBe(r.status);
  expect(r.headers.get('x-ms-error-code')).toBe(error!.code);
  expect(typeof error!.message).toBe('string');
  const named =
    (typeof error!.target === 'string' && error!.target.length > 0) ||
    /\b(body|properties|filters|location|tags|role|displayName|expiresInHours|maxUses|name|resourceGroup|connectionString|subscriptionId|hostname|captureRoot)\b/.test(
      error!.message,
    );
  expect(named, `${context}: names no field: ${r.text}`).toBe(true);
  if (error!.target !== undefined) {
    // The message says which field too, so that a CLI printing only the message is clear.
    expect(error!.message.length, context).toBeGreaterThan(0);
  }
}

// ---- generators ---------------------------------------------------------------------------

/** Values of the wrong JSON type for most fields, and plain junk. */
const junk = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }),
);

const address = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.constantFrom(
    '10.0.0.300',
    '010.0.0.1',
    '1.2.3',
    '10.0.0.1/8',
    '10.1.0.0/16',
    'fd77::/64',
    '::/0',
    '0.0.0.0/0',
    '10.0.0.1-10.0.0.9',
    '10.0.0.9-10.0.0.1',
    '::1-10.0.0.1',
    '255.255.255.255',
    'fe80::1%eth0',
  ),
);
const ipField = fc.oneof(
  address,
  fc.array(address, { minLength: 1, maxLength: 6 }).map((xs) => xs.join(';')),
  fc.constantFrom('', ';', '1.2.3.4;', ';1.2.3.4', '1.2.3.4;;5.6.7.8', ' 10.0.0.1 ; 10.0.0.2 '),
  fc.array(fc.ipV4(), { minLength: 70, maxLength: 80 }).map((xs) => xs.join(';')),
  fc.string({ maxLength: 30 }),
  junk,
);
const port = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: -3, max: 70000 }));
const portField = fc.oneof(
  port.map(String),
  fc.tuple(port, port).map(([x, y]) => `${x}-${y}`),
  fc.array(port, { minLength: 1, maxLength: 5 }).map((xs) => xs.join(';')),
  fc.constantFrom('80-', '-80', '80;;443', ';80', ';', '', ' 80 ', '80;443;', '0x50', '1e3', '٨٠'),
  fc
    .array(fc.integer({ min: 1, max: 65535 }), { minLength: 65, maxLength: 70 })
    .map((xs) => xs.map((x) => `${x}-${x}`).join(';')),
  junk,
);
/** Mostly the valid side of a rule, sometimes the other: bodies that pass and bodies that fail. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>) =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: invalid });

const filter = fc
  .record(
    {
      protocol: mostly(
        fc.constantFrom('TCP', 'udp', 'Any', 'ANY'),
        fc.oneof(fc.constantFrom('ICMP', ''), junk),
      ),
      localIPAddress: mostly(fc.oneof(fc.ipV4(), fc.constant('10.0.0.0/8')), ipField),
      remoteIPAddress: mostly(fc.oneof(fc.ipV4(), fc.constant('10.1.0.1-10.1.0.9')), ipField),
      localPort: mostly(fc.integer({ min: 0, max: 65535 }).map(String), portField),
      remotePort: mostly(fc.constantFrom('443', '80;443', '8000-8100'), portField),
      localIpAddress: ipField,
    },
    { requiredKeys: [] },
  )
  .map((f) => {
    // The misspelt field is refused by name; keep it rare so that most lists can pass.
    const { localIpAddress, ...rest } = f;
    return localIpAddress !== undefined &&
      typeof localIpAddress === 'string' &&
      localIpAddress.length % 5 === 0
      ? f
      : rest;
  });
const limit = mostly(
  fc.oneof(fc.integer({ min: 0, max: 18000 }), fc.constantFrom(0, 24, 18000)),
  fc.oneof(
    fc.integer({ min: -10, max: 4294967300 }),
    fc.constantFrom(23, 18001, 604800, 604801, 4294967295, 4294967296, 1.5, -1),
    fc.constantFrom(Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 1e300, Number.MIN_VALUE),
    junk,
  ),
);
const path = mostly(
  fc.constantFrom('ok'),
  fc.oneof(
    fc.constantFrom(
      '/var/captures/X.CAP',
      '/var/captures/../etc/x.cap',
      '/var/captures/./x.cap',
      '/var/captures',
      '/var/captures/',
      '/var/capturesx/x.cap',
      '/etc/passwd',
      'x.cap',
      '',
      '/var/captures/x.txt',
      '/var/captures/x\u0000.cap',
      '//var/captures/x.cap',
      '/var/captures/%2e%2e/x.cap',
    ),
    fc.string({ maxLength: 30 }).map((s) => `/var/captures/${s}.cap`),
    fc.string({ maxLength: 30 }),
    junk,
  ),
);
/** 'ok' becomes a fresh file under the capture root (an existing file is never overwritten). */
const pathOf = (kind: unknown): unknown =>
  kind === 'ok' ? `/var/captures/gen/${next()}.cap` : kind;
const target = mostly(
  fc.constant('own'),
  fc.oneof(
    fc.constantFrom('upper', 'foreign', 'missing', 'vmss', 'trailing'),
    fc.string({ maxLength: 40 }),
    junk,
  ),
);
const targetOf = (kind: unknown): unknown => {
  switch (kind) {
    case 'own':
      return vmId(a.sub, RG, VM);
    case 'upper':
      return vmId(a.sub.toUpperCase(), RG.toUpperCase(), VM.toUpperCase());
    case 'foreign':
      return vmId(b.sub, RG, VM);
    case 'missing':
      return vmId(a.sub, RG, 'no-such-vm');
    case 'vmss':
      return `/subscriptions/${a.sub}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachineScaleSets/ss`;
    case 'trailing':
      return `${vmId(a.sub, RG, VM)}/`;
    default:
      return kind;
  }
};
const storageId = fc.oneof(
  fc.constantFrom('foreign', 'missing'),
  fc.string({ maxLength: 40 }),
  junk,
);
const storageIdOf = (kind: unknown): unknown => {
  const id = (sub: string, name: string) =>
    `/subscriptions/${sub}/resourceGroups/${ACCOUNT_RG}/providers/Microsoft.Storage/storageAccounts/${name}`;
  switch (kind) {
    case 'foreign':
      return id(b.sub, ACCOUNT);
    case 'missing':
      return id(a.sub, 'nosuchacct');
    default:
      return kind;
  }
};
const isObject = (x: unknown): x is Record<string, unknown> =>
  x !== null && typeof x === 'object' && !Array.isArray(x);
const storageLocation = mostly(
  fc.record({ filePath: path }),
  fc.oneof(
    fc.record(
      { filePath: path, localPath: path, storageId, storagePath: fc.oneof(path, junk) },
      { requiredKeys: [] },
    ),
    junk,
  ),
).map((loc) => {
  if (!isObject(loc)) return loc;
  const out: Record<string, unknown> = { ...loc };
  for (const k of ['filePath', 'localPath', 'storagePath']) if (k in out) out[k] = pathOf(out[k]);
  if ('storageId' in out) out['storageId'] = storageIdOf(out['storageId']);
  return out;
});
const properties = fc
  .record(
    {
      target,
      targetType: mostly(
        fc.constant('AzureVM'),
        fc.oneof(fc.constantFrom('AzureVMSS', 'azurevm'), junk),
      ),
      scope: mostly(
        fc.constant({}),
        fc.oneof(
          fc.record(
            {
              include: fc.oneof(fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), junk),
              exclude: fc.oneof(fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), junk),
            },
            { requiredKeys: [] },
          ),
          junk,
        ),
      ),
      bytesToCapturePerPacket: limit,
      totalBytesPerSession: limit,
      timeLimitInSeconds: limit,
      storageLocation,
      filters: mostly(
        fc.array(filter, { maxLength: 4 }),
        fc.oneof(fc.array(filter, { minLength: 15, maxLength: 18 }), junk),
      ),
      continuousCapture: mostly(fc.constantFrom(false, null), fc.oneof(fc.constant(true), junk)),
      captureSettings: fc.oneof(
        fc.record(
          { fileCount: limit, fileSizeInBytes: limit, sessionTimeLimitInSeconds: limit },
          { requiredKeys: [] },
        ),
        junk,
      ),
      extra: junk,
    },
    { requiredKeys: ['target', 'storageLocation'] },
  )
  .map((p) => {
    const out: Record<string, unknown> = { ...p, target: targetOf(p.target) };
    // Continuous captures name localPath (Azure's rule): move the file there when asked for.
    const loc = out['storageLocation'];
    if (
      p.continuousCapture === true &&
      isObject(loc) &&
      'filePath' in loc &&
      !('localPath' in loc)
    ) {
      const { filePath, ...rest } = loc;
      out['storageLocation'] = { ...rest, localPath: filePath };
    }
    return out;
  });
const captureBodies = fc.oneof(
  { weight: 8, arbitrary: properties.map((p) => ({ properties: p })) },
  { weight: 1, arbitrary: junk },
  { weight: 1, arbitrary: junk.map((j) => ({ properties: j })) },
);

const scale = Number(process.env['WW_PROPERTY_SCALE'] ?? 1);
const settings = { numRuns: 150 * scale, endOnFailure: true } as const;

// ---- packet captures ----------------------------------------------------------------------

describe('packet capture PUT: generated bodies', () => {
  it('never a 5xx; every refusal names its field; a refused PUT leaves the capture intact', async () => {
    const good = await t.call('GET', net(pcPath(a.sub, GOOD)));
    expect(good.status).toBe(200);
    let created = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(captureBodies, async (body) => {
        const name = `p-${next()}`;
        const fresh = await t.call('PUT', net(pcPath(a.sub, name)), { body });
        expectSoundAnswer(fresh, `PUT ${name} ${JSON.stringify(body).slice(0, 300)}`);
        const read = await t.call('GET', net(pcPath(a.sub, name)));
        if (fresh.status === 201) {
          created++;
          // What was stored reads back as it was answered (provisioningState moves on).
          expect(read.status).toBe(200);
          const strip = (x: Record<string, unknown>) => ({ ...x, provisioningState: undefined });
          expect(strip(read.body.properties)).toEqual(strip(fresh.body.properties));
          expect(read.body.properties.storageLocation.filePath ?? '').not.toContain('..');
        } else {
          refused++;
          // Nothing half-made: a refused create leaves no capture behind.
          expect(read.status, read.text).toBe(404);
          expect(read.body.error.code).toBe('ResourceNotFound');
        }
        const again = await t.call('PUT', net(pcPath(a.sub, GOOD)), { body });
        expectSoundAnswer(again, `PUT ${GOOD}`);
        expect([200, 400, 409, 415], again.text).toContain(again.status);
        const after = await t.call('GET', net(pcPath(a.sub, GOOD)));
        expect(after.text).toBe(good.text);
      }),
      settings,
    );
    // The generators reach both sides of the rules.
    expect(created).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('raw JSON a serialiser would never write: huge and special numbers, deep nesting, duplicates', async () => {
    const good = await t.call('GET', net(pcPath(a.sub, GOOD)));
    const target = JSON.stringify(vmId(a.sub, RG, VM));
    const raws = [
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r1.cap"},"timeLimitInSeconds":1e400}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r2.cap"},"totalBytesPerSession":-1e400}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r3.cap"},"bytesToCapturePerPacket":1.0}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r4.cap"},"timeLimitInSeconds":1e-400}}`,
      `{"properties":{"target":${target},"target":${target},"storageLocation":{"filePath":"/var/captures/r5.cap"}}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r6.cap"},"filters":${'['.repeat(5000)}${']'.repeat(5000)}}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r7.cap"},"__proto__":{"x":1}}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r8.cap"},"constructor":{"prototype":{"x":1}}}}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r9.cap"},"filters":[{"localPort":"\\ud800"}]}}`,
      `{"properties":{"target":"\\u0000","storageLocation":{"filePath":"/var/captures/r10.cap"}}}`,
      `${'{"a":'.repeat(3000)}1${'}'.repeat(3000)}`,
      `{"properties":{"target":${target},"storageLocation":{"filePath":"/var/captures/r12.cap"}}}garbage`,
      '\uFEFF{"properties":{}}',
    ];
    for (const [i, raw] of raws.entries()) {
      for (const name of [`raw-${next()}`, GOOD]) {
        const r = await t.call('PUT', net(pcPath(a.sub, name)), { raw });
        expectSoundAnswer(r, `raw #${i} to ${name}: ${raw.slice(0, 120)}`);
      }
    }
    expect((await t.call('GET', net(pcPath(a.sub, GOOD)))).text).toBe(good.text);
  });
});

// ---- network watchers ---------------------------------------------------------------------

describe('network watcher PUT: generated bodies', () => {
  it('never a 5xx; refusals name the field; a refused PUT leaves the watcher as last stored', async () => {
    const watcher = `/subscriptions/${a.sub}/resourceGroups/rg-w/providers/Microsoft.Network/networkWatchers/nw-prop`;
    const first = await t.call('PUT', net(watcher), {
      body: { location: 'northeurope', tags: { k: 'v' } },
    });
    expect(first.status, first.text).toBe(201);
    let good = (await t.call('GET', net(watcher))).text;
    const location = fc.oneof(
      fc.constantFrom('northeurope', 'North Europe', 'NORTHEUROPE', 'westeurope', 'x'.repeat(65)),
      fc.string({ maxLength: 20 }),
      junk,
    );
    const tags = fc.oneof(
      fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 4 }),
      fc.dictionary(fc.string({ maxLength: 600 }), junk, { maxKeys: 2 }),
      junk,
    );
    const bodies = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({ location, tags, properties: junk, id: junk }, { requiredKeys: [] }),
      },
      { weight: 1, arbitrary: junk },
    );
    await fc.assert(
      fc.asyncProperty(bodies, fc.boolean(), async (body, fresh) => {
        const p = fresh
          ? `/subscriptions/${a.sub}/resourceGroups/rg-w/providers/Microsoft.Network/networkWatchers/nw-${next()}`
          : watcher;
        const r = await t.call('PUT', net(p), { body });
        expectSoundAnswer(r, `PUT watcher ${JSON.stringify(body).slice(0, 200)}`);
        const read = await t.call('GET', net(p));
        if (r.status < 300) {
          expect(read.status).toBe(200);
          expect(read.body).toEqual(r.body);
          if (!fresh) good = read.text;
        } else if (fresh) {
          expect(read.status).toBe(404);
        } else {
          expect(read.text).toBe(good);
        }
      }),
      settings,
    );
  });
});

// ---- native bodies ------------------------------------------------------------------------

describe('native API: generated bodies', () => {
  it('POST /api/v1/subscriptions (admin): displayName', async () => {
    const bodies = fc.oneof(
      fc.record(
        { displayName: fc.oneof(fc.string({ maxLength: 140 }), junk), extra: junk },
        { requiredKeys: [] },
      ),
      junk,
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const r = await t.call('POST', '/api/v1/subscriptions', { body });
        expectSoundAnswer(r, `POST subscriptions ${JSON.stringify(body)}`);
        if (r.status === 201) {
          const list = await t.call('GET', '/api/v1/subscriptions');
          const mine = list.body.value.find(
            (s: { subscriptionId: string }) => s.subscriptionId === r.body.subscriptionId,
          );
          expect(mine.displayName).toBe((body as { displayName: string }).displayName);
        }
      }),
      { ...settings, numRuns: 60 * scale },
    );
  });

  it('POST tokens and enrollmentTokens (Owner): role, expiresInHours, maxUses', async () => {
    const tokenBodies = fc.oneof(
      fc.record(
        {
          role: fc.oneof(
            fc.constantFrom('Reader', 'Contributor', 'Owner', 'Admin', 'owner', ''),
            junk,
          ),
          subscriptionId: fc.constantFrom(b.sub, randomUUID()),
        },
        { requiredKeys: [] },
      ),
      junk,
    );
    await fc.assert(
      fc.asyncProperty(tokenBodies, async (body) => {
        const r = await t.call('POST', `/api/v1/subscriptions/${a.sub}/tokens`, {
          token: a.tenant.owner,
          body,
        });
        expectSoundAnswer(r, `POST tokens ${JSON.stringify(body)}`);
        if (r.status === 201) {
          // Always a token of the path's subscription, whatever the body claims.
          expect(r.body.subscriptionId).toBe(a.sub);
          const seen = await t.call('GET', '/api/v1/subscriptions', { token: r.body.token });
          expect(seen.body.value.map((s: { subscriptionId: string }) => s.subscriptionId)).toEqual([
            a.sub,
          ]);
        }
      }),
      { ...settings, numRuns: 60 * scale },
    );
    const hours = fc.oneof(
      fc.integer({ min: -5, max: 9000 }),
      fc.constantFrom(0, 1, 8760, 8761, 1.5, 1e308, -0),
      junk,
    );
    const uses = fc.oneof(
      fc.integer({ min: -5, max: 2_000_000 }),
      fc.constantFrom(0, 1, 1000, 1_000_000, 1_000_001, 2.5, 1e308, -0),
      junk,
    );
    const enrollBodies = fc.oneof(
      fc.record(
        {
          expiresInHours: hours,
          maxUses: uses,
          takeover: fc.oneof(
            fc.record(
              {
                resourceGroup: fc.oneof(fc.constantFrom(RG, 'rg.', ''), junk),
                name: fc.oneof(fc.constantFrom(VM, 'vm-new', '-x', 'a'.repeat(81)), junk),
                subscriptionId: fc.constant(b.sub),
              },
              { requiredKeys: [] },
            ),
            junk,
          ),
          extra: junk,
        },
        { requiredKeys: [] },
      ),
      junk,
    );
    await fc.assert(
      fc.asyncProperty(enrollBodies, async (body) => {
        const started = Date.now();
        const r = await t.call('POST', `/api/v1/subscriptions/${a.sub}/enrollmentTokens`, {
          token: a.tenant.owner,
          body,
        });
        expectSoundAnswer(r, `POST enrollmentTokens ${JSON.stringify(body)}`);
        if (r.status === 201) {
          const given = body as {
            expiresInHours?: number;
            maxUses?: number;
            takeover?: unknown;
          };
          const h = given.expiresInHours ?? (given.takeover ? 1 : 24);
          const m = given.takeover ? 1 : (given.maxUses ?? 1000);
          expect(Number.isInteger(m) && m >= 1 && m <= 1_000_000).toBe(true);
          expect(r.body.maxUses).toBe(m);
          expect(Number.isInteger(h) && h >= 1 && h <= 8760).toBe(true);
          const expires = Date.parse(r.body.expiresAt);
          expect(Math.abs(expires - (started + h * 3_600_000))).toBeLessThan(60_000);
        }
      }),
      { ...settings, numRuns: 60 * scale },
    );
  });

  it('POST storageAccounts (Contributor): a refused registration leaves the registered account intact', async () => {
    const list = () =>
      t.call('GET', `/api/v1/subscriptions/${a.sub}/storageAccounts`, { token: a.tenant.reader });
    const before = (await list()).text;
    const part = fc.oneof(
      fc.constantFrom(
        'DefaultEndpointsProtocol=https',
        'AccountName=acct',
        'AccountName=',
        'AccountKey=AAAA',
        'AccountKey=not base64!',
        'EndpointSuffix=core.windows.net',
        'BlobEndpoint=http://127.0.0.1:9/acct',
        'BlobEndpoint=javascript:alert(1)',
        'BlobEndpoint=file:///etc/passwd',
        'SharedAccessSignature=sv=2020&sig=x',
        'UseDevelopmentStorage=false',
        'accountkey=AAAA',
        '=',
        '',
      ),
      fc
        .tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }))
        .map(([k, v]) => `${k}=${v}`),
    );
    const connectionString = fc.oneof(
      fc.array(part, { maxLength: 5 }).map((xs) => xs.join(';')),
      fc.string({ maxLength: 40 }),
      junk,
    );
    const name = fc.oneof(
      fc.constantFrom(ACCOUNT, 'GOODACCT', 'ab', 'a'.repeat(25), 'good-acct', ''),
      fc.string({ maxLength: 30 }),
      junk,
    );
    const resourceGroup = fc.oneof(
      fc.constantFrom(ACCOUNT_RG, 'RG-STORAGE', 'rg.', '', 'x'.repeat(91), 'rg/../x'),
      fc.string({ maxLength: 20 }),
      junk,
    );
    const bodies = fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({ name, resourceGroup, connectionString }, { requiredKeys: [] }),
      },
      { weight: 1, arbitrary: junk },
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const r = await t.call('POST', `/api/v1/subscriptions/${a.sub}/storageAccounts`, {
          token: a.tenant.contributor,
          body,
        });
        expectSoundAnswer(r, `POST storageAccounts ${JSON.stringify(body).slice(0, 200)}`);
        // Nothing here reaches a blob endpoint, so nothing can be registered.
        expect(r.status, r.text).toBeGreaterThanOrEqual(400);
        // The key is never echoed, even in a refusal.
        const text = isObject(body) ? body['connectionString'] : undefined;
        const key = /AccountKey=([^;]+)/i.exec(typeof text === 'string' ? text : '')?.[1];
        if (key && key.length > 3) expect(r.text).not.toContain(key);
      }),
      { ...settings, numRuns: 80 * scale },
    );
    expect((await list()).text).toBe(before);
  });

  it('POST agent/enroll (enrollment token): the enrollment body', async () => {
    const bodies = fc.oneof(
      fc.record(
        {
          subscriptionId: fc.oneof(fc.constantFrom(a.sub, a.sub.toUpperCase(), b.sub), junk),
          resourceGroup: fc.oneof(
            fc.constantFrom(RG, 'rg.', ''),
            fc.string({ maxLength: 12 }),
            junk,
          ),
          name: fc.oneof(
            fc.constantFrom('vm-e', VM, '-x', 'a'.repeat(81)),
            fc.string({ maxLength: 12 }),
            junk,
          ),
          location: fc.oneof(
            fc.constantFrom(LOCATION, 'West Europe', ''),
            fc.string({ maxLength: 12 }),
            junk,
          ),
          hostname: fc.oneof(fc.string({ maxLength: 20 }), junk),
          captureRoot: fc.oneof(
            fc.constantFrom('/var/captures', '/', 'relative', '/var/../etc'),
            fc.string({ maxLength: 12 }),
            junk,
          ),
        },
        { requiredKeys: [] },
      ),
      junk,
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const r = await t.call('POST', ENROLL_PATH, { token: a.tenant.enrollToken, body });
        expectSoundAnswer(r, `POST enroll ${JSON.stringify(body).slice(0, 200)}`);
        if (r.status === 201) {
          const vm = await t.call('GET', `${r.body.vmId as string}?api-version=2024-07-01`);
          expect(vm.status, vm.text).toBe(200);
          expect(vm.body.id).toBe(r.body.vmId);
        }
      }),
      { ...settings, numRuns: 80 * scale },
    );
    // The fixture agent's VM is still A's, connected, and captures on it still work.
    const status = await t.call('POST', net(`${pcPath(a.sub, GOOD)}/queryStatus`));
    expect(status.body.agentConnectionState).toBe('Connected');
  });
});
