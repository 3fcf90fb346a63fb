/**
 * The behaviour every Store implementation must have, as a vitest suite. Each backend's test
 * file calls describeStoreConformance with a way to open an empty store of its kind.
 *
 * Not named *.test.ts: vitest collects only those, and this file is imported by them.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  AuditRecord,
  CreateSessionResult,
  EnrollmentTokenRecord,
  NetworkWatcherRecord,
  OperationRecord,
  Page,
  SessionRecord,
  StorageAccountRecord,
  Store,
  SubscriptionRecord,
  TokenRecord,
  VmRecord,
} from './store.js';

// Fixed times in the past, so that a time the store sets itself (updatedAt) is later than all.
const epoch = Date.parse('2020-01-01T00:00:00.000Z');
const at = (seconds: number): Date => new Date(epoch + seconds * 1000);

const subA = '0b7c4f7e-0000-4000-8000-00000000000a';
const subB = '0b7c4f7e-0000-4000-8000-00000000000b';

function subscription(id: string, displayName = `sub ${id}`): SubscriptionRecord {
  return { id, displayName, createdAt: at(0) };
}

function token(subscriptionId: string | null, overrides: Partial<TokenRecord> = {}): TokenRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    role: subscriptionId === null ? 'Admin' : 'Contributor',
    hash: randomUUID().replaceAll('-', ''),
    createdAt: at(1),
    revokedAt: null,
    ...overrides,
  };
}

function vm(subscriptionId: string, overrides: Partial<VmRecord> = {}): VmRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'Fleet-RG',
    name: 'Web-01',
    location: 'westus',
    hostname: 'web-01.example',
    captureRoot: '/var/lib/wirewatch/captures',
    credentialHash: randomUUID().replaceAll('-', ''),
    createdAt: at(2),
    lastSeenAt: null,
    ...overrides,
  };
}

function watcher(
  subscriptionId: string,
  overrides: Partial<NetworkWatcherRecord> = {},
): NetworkWatcherRecord {
  return {
    subscriptionId,
    resourceGroup: 'NetworkWatcherRG',
    name: 'NetworkWatcher_westus',
    location: 'westus',
    tags: { team: 'net' },
    etag: randomUUID(),
    createdAt: at(3),
    ...overrides,
  };
}

function session(subscriptionId: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'NetworkWatcherRG',
    watcherName: 'NetworkWatcher_westus',
    name: 'Capture-1',
    location: 'westus',
    vmId: 'vm-1',
    properties: {
      target:
        '/subscriptions/x/resourceGroups/Fleet-RG/providers/Microsoft.Compute/virtualMachines/Web-01',
      bytesToCapturePerPacket: 0,
      filters: [{ protocol: 'TCP', localPort: '443' }],
    },
    status: 'NotStarted',
    stopReason: null,
    errors: [],
    captureStartTime: null,
    stopTime: null,
    progress: null,
    files: [],
    stopRequested: null,
    deleteRequested: false,
    upload: null,
    etag: randomUUID(),
    createdAt: at(4),
    updatedAt: at(4),
    ...overrides,
  };
}

function operation(
  subscriptionId: string,
  sessionId: string,
  overrides: Partial<OperationRecord> = {},
): OperationRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    location: 'westus',
    kind: 'create',
    sessionId,
    resourceId: '/subscriptions/x/resourceGroups/NetworkWatcherRG/providers/…/packetCaptures/c',
    status: 'InProgress',
    error: null,
    createdAt: at(5),
    updatedAt: at(5),
    ...overrides,
  };
}

function audit(subscriptionId: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    at: at(6),
    actor: 'token:t1',
    action: 'packetCapture.create',
    resourceId: '/subscriptions/x/…/packetCaptures/c',
    sourceIp: '192.0.2.10',
    detail: { outcome: 'Succeeded', status: 201 },
    ...overrides,
  };
}

/** Follows `next` from the first page; fails when it does not end within `maxPages`. */
async function readAllPages<T>(
  fetchPage: (after: string | null) => Promise<Page<T>>,
  maxPages: number,
): Promise<T[]> {
  const items: T[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < maxPages; pages++) {
    const page: Page<T> = await fetchPage(after);
    items.push(...page.items);
    if (page.next === null) return items;
    after = page.next;
  }
  throw new Error(`paging did not end within ${maxPages} pages`);
}

function kinds(results: readonly CreateSessionResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) counts[result.kind] = (counts[result.kind] ?? 0) + 1;
  return counts;
}

/**
 * Declares the conformance suite for one Store implementation. `open` must return a new, empty
 * store each time; the suite closes it after each test.
 */
export function describeStoreConformance(name: string, open: () => Promise<Store>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await open();
      await store.createSubscription(subscription(subA, 'Contoso'));
      await store.createSubscription(subscription(subB, 'Fabrikam'));
    });

    afterEach(async () => {
      await store.close();
    });

    describe('subscriptions', () => {
      it('creates, gets and lists', async () => {
        expect(await store.getSubscription(subA)).toEqual(subscription(subA, 'Contoso'));
        expect(await store.getSubscription(randomUUID())).toBeUndefined();
        const all = await store.listSubscriptions();
        expect(all.map((s) => s.id).sort()).toEqual([subA, subB]);
      });
    });

    describe('storage accounts', () => {
      const account = (subscriptionId: string, overrides: Partial<StorageAccountRecord> = {}) => ({
        subscriptionId,
        resourceGroup: 'Storage-RG',
        name: 'CaptureStore',
        accountName: 'devstoreaccount1',
        blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
        connectionString:
          'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;',
        createdAt: at(7),
        ...overrides,
      });

      it('creates, replaces, gets case-insensitively keeping the casing, lists and deletes', async () => {
        const first = await store.putStorageAccount(account(subA));
        expect(first.created).toBe(true);
        expect(first.record).toEqual(account(subA));
        const replaced = await store.putStorageAccount(
          account(subA, {
            name: 'capturestore',
            blobEndpoint: 'http://127.0.0.1:10001/devstoreaccount1',
          }),
        );
        expect(replaced.created).toBe(false);
        expect(replaced.record.name).toBe('CaptureStore');
        expect(replaced.record.blobEndpoint).toBe('http://127.0.0.1:10001/devstoreaccount1');
        expect(await store.getStorageAccount(subA, 'storage-rg', 'CAPTURESTORE')).toEqual(
          replaced.record,
        );
        expect(await store.getStorageAccount(subB, 'Storage-RG', 'CaptureStore')).toBeUndefined();
        await store.putStorageAccount(account(subA, { resourceGroup: 'a-rg', name: 'second' }));
        await store.putStorageAccount(account(subB));
        expect((await store.listStorageAccounts(subA)).map((a) => a.name)).toEqual([
          'second',
          'CaptureStore',
        ]);
        expect(await store.deleteStorageAccount(subA, 'STORAGE-rg', 'capturestore')).toBe(true);
        expect(await store.deleteStorageAccount(subA, 'Storage-RG', 'CaptureStore')).toBe(false);
        expect((await store.listStorageAccounts(subB)).length).toBe(1);
      });

      it('keeps connection strings sealed with the current key: nothing to re-seal, all readable', async () => {
        await store.putStorageAccount(account(subA));
        await store.putStorageAccount(account(subB, { name: 'other' }));
        expect(await store.resealSecrets()).toBe(0);
        expect((await store.getStorageAccount(subB, 'storage-rg', 'other'))?.connectionString).toBe(
          account(subB).connectionString,
        );
      });
    });

    describe('API tokens', () => {
      it('finds a token by hash, revoked or not', async () => {
        const admin = token(null);
        const revoked = token(subA, { role: 'Reader', revokedAt: at(9) });
        await store.createToken(admin);
        await store.createToken(revoked);
        expect(await store.findTokenByHash(admin.hash)).toEqual(admin);
        expect(await store.findTokenByHash(revoked.hash)).toEqual(revoked);
        expect(await store.findTokenByHash('0'.repeat(64))).toBeUndefined();
      });

      it('revokes within the subscription only', async () => {
        const own = token(subA);
        const other = token(subB);
        await store.createToken(own);
        await store.createToken(other);

        expect(await store.revokeToken(subA, other.id, at(10))).toBe(false);
        expect((await store.findTokenByHash(other.hash))?.revokedAt).toBeNull();

        expect(await store.revokeToken(subA, own.id, at(10))).toBe(true);
        expect(await store.findTokenByHash(own.hash)).toEqual({ ...own, revokedAt: at(10) });

        expect(await store.revokeToken(subA, randomUUID(), at(10))).toBe(false);
      });

      it('revokes any token when unscoped (admin)', async () => {
        const other = token(subB);
        await store.createToken(other);
        expect(await store.revokeToken(null, other.id, at(11))).toBe(true);
        expect((await store.findTokenByHash(other.hash))?.revokedAt).toEqual(at(11));
        expect(await store.revokeToken(null, randomUUID(), at(11))).toBe(false);
      });
      it('revokes every admin token but the current one, and no API token', async () => {
        const old1 = token(null);
        const old2 = token(null);
        const earlier = token(null, { revokedAt: at(5) });
        const current = token(null);
        const api = token(subA, { role: 'Owner' });
        for (const record of [old1, old2, earlier, current, api]) await store.createToken(record);
        expect(await store.revokeAdminTokensExcept(current.hash, at(12))).toBe(2);
        expect((await store.findTokenByHash(old1.hash))?.revokedAt).toEqual(at(12));
        expect((await store.findTokenByHash(old2.hash))?.revokedAt).toEqual(at(12));
        // An earlier revocation keeps its time; the current token and API tokens are untouched.
        expect((await store.findTokenByHash(earlier.hash))?.revokedAt).toEqual(at(5));
        expect(await store.findTokenByHash(current.hash)).toEqual(current);
        expect(await store.findTokenByHash(api.hash)).toEqual(api);
        expect(await store.revokeAdminTokensExcept(current.hash, at(13))).toBe(0);
      });
    });

    describe('enrollment tokens', () => {
      const enrollmentToken = (
        subscriptionId: string,
        overrides: Partial<EnrollmentTokenRecord> = {},
      ): EnrollmentTokenRecord => ({
        id: randomUUID(),
        subscriptionId,
        hash: randomUUID().replaceAll('-', ''),
        createdAt: at(1),
        expiresAt: at(3601),
        revokedAt: null,
        takeover: null,
        usedAt: null,
        maxUses: null,
        uses: 0,
        ...overrides,
      });

      it('finds a token by hash', async () => {
        const record = enrollmentToken(subA, { hash: 'e'.repeat(64) });
        const takeover = enrollmentToken(subA, {
          takeover: { resourceGroup: 'Fleet-RG', name: 'Web-01' },
        });
        await store.createEnrollmentToken(record);
        await store.createEnrollmentToken(takeover);
        expect(await store.findEnrollmentTokenByHash(record.hash)).toEqual(record);
        expect(await store.findEnrollmentTokenByHash(takeover.hash)).toEqual(takeover);
        expect(await store.findEnrollmentTokenByHash('f'.repeat(64))).toBeUndefined();
      });

      it("lists a subscription's tokens oldest first, and revokes within the subscription only", async () => {
        const second = enrollmentToken(subA, { createdAt: at(20) });
        const first = enrollmentToken(subA, { createdAt: at(10) });
        const other = enrollmentToken(subB);
        for (const record of [second, first, other]) await store.createEnrollmentToken(record);
        expect(await store.listEnrollmentTokens(subA)).toEqual([first, second]);

        expect(await store.revokeEnrollmentToken(subA, other.id, at(30))).toBe(false);
        expect((await store.findEnrollmentTokenByHash(other.hash))?.revokedAt).toBeNull();
        expect(await store.revokeEnrollmentToken(subA, first.id, at(30))).toBe(true);
        // A second revocation succeeds and keeps the first time.
        expect(await store.revokeEnrollmentToken(subA, first.id, at(40))).toBe(true);
        expect((await store.findEnrollmentTokenByHash(first.hash))?.revokedAt).toEqual(at(30));
        expect(await store.revokeEnrollmentToken(subA, randomUUID(), at(30))).toBe(false);
      });

      it('uses a token once, even when calls race; never a revoked one', async () => {
        const record = enrollmentToken(subA, {
          takeover: { resourceGroup: 'rg', name: 'vm' },
        });
        const revoked = enrollmentToken(subA, { revokedAt: at(2) });
        await store.createEnrollmentToken(record);
        await store.createEnrollmentToken(revoked);
        const results = await Promise.all(
          [1, 2, 3, 4, 5].map(() => store.useEnrollmentToken(record.id, at(50))),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect((await store.findEnrollmentTokenByHash(record.hash))?.usedAt).toEqual(at(50));
        expect(await store.useEnrollmentToken(revoked.id, at(50))).toBe(false);
        expect(await store.useEnrollmentToken(randomUUID(), at(50))).toBe(false);
      });
    });

    describe('VMs', () => {
      it('looks a VM up by id, credential and case-insensitive name, keeping its casing', async () => {
        const record = vm(subA);
        expect(await store.upsertVm(record)).toEqual(record);
        expect(await store.getVmById(record.id)).toEqual(record);
        expect(await store.getVmByCredentialHash(record.credentialHash)).toEqual(record);
        expect(await store.getVm(subA, 'FLEET-rg', 'web-01')).toEqual(record);
        expect(await store.getVm(subB, 'Fleet-RG', 'Web-01')).toBeUndefined();
        expect(await store.getVmById(randomUUID())).toBeUndefined();
        expect(await store.getVmByCredentialHash('0'.repeat(64))).toBeUndefined();
      });

      it('createVm registers a new name only, whatever its casing, and of racers one wins', async () => {
        const first = vm(subA);
        expect(await store.createVm(first)).toEqual(first);
        const again = vm(subA, { resourceGroup: 'FLEET-rg', name: 'web-01', captureRoot: '/' });
        expect(await store.createVm(again)).toBeUndefined();
        expect(await store.getVmById(first.id)).toEqual(first);
        expect(await store.getVmByCredentialHash(again.credentialHash)).toBeUndefined();

        const racers = await Promise.all(
          [1, 2, 3, 4].map(() => store.createVm(vm(subA, { name: 'raced' }))),
        );
        const winners = racers.filter((r) => r !== undefined);
        expect(winners).toHaveLength(1);
        expect(await store.getVm(subA, 'Fleet-RG', 'raced')).toEqual(winners[0]);
      });

      it("createVm with limits counts the token's uses and the subscription's VMs, racers included", async () => {
        const token: EnrollmentTokenRecord = {
          id: randomUUID(),
          subscriptionId: subA,
          hash: randomUUID().replaceAll('-', ''),
          createdAt: at(1),
          expiresAt: at(3601),
          revokedAt: null,
          takeover: null,
          usedAt: null,
          maxUses: 3,
          uses: 0,
        };
        await store.createEnrollmentToken(token);
        const limits = { enrollmentTokenId: token.id, maxVmsPerSubscription: 100 };
        const racers = await Promise.allSettled(
          [1, 2, 3, 4, 5].map((i) => store.createVm(vm(subA, { name: `t-${i}` }), limits)),
        );
        expect(racers.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
        for (const r of racers.filter((x) => x.status === 'rejected')) {
          expect(r.reason).toMatchObject({ code: 'EnrollmentLimitReached' });
        }
        expect((await store.findEnrollmentTokenByHash(token.hash))?.uses).toBe(3);
        expect(await store.listVms(subA)).toHaveLength(3);
        // A name enrolled already uses nothing.
        const unlimited = { ...token, id: randomUUID(), hash: 'f'.repeat(32), maxUses: null };
        await store.createEnrollmentToken(unlimited);
        const taken = vm(subA, { name: 't-9' });
        expect(await store.createVm(taken, { enrollmentTokenId: unlimited.id })).toEqual(taken);
        expect(
          await store.createVm(vm(subA, { name: 'T-9' }), { enrollmentTokenId: unlimited.id }),
        ).toBeUndefined();
        expect((await store.findEnrollmentTokenByHash(unlimited.hash))?.uses).toBe(1);
        // The subscription's cap: subA has 4 VMs now.
        await expect(
          store.createVm(vm(subA, { name: 'over' }), { maxVmsPerSubscription: 4 }),
        ).rejects.toMatchObject({ code: 'EnrollmentLimitReached' });
        expect(await store.getVm(subA, 'Fleet-RG', 'over')).toBeUndefined();
        // Another subscription's VMs do not count.
        const other = vm(subB, { name: 'other' });
        expect(await store.createVm(other, { maxVmsPerSubscription: 1 })).toEqual(other);
      });

      it('re-enrollment keeps the id and replaces credential, hostname and capture root', async () => {
        const first = vm(subA);
        await store.upsertVm(first);
        const again = vm(subA, {
          resourceGroup: 'fleet-rg',
          name: 'WEB-01',
          hostname: 'web-01-rebuilt.example',
          captureRoot: '/srv/captures',
          createdAt: at(100),
        });
        const expected: VmRecord = {
          ...first,
          hostname: again.hostname,
          captureRoot: again.captureRoot,
          credentialHash: again.credentialHash,
        };
        expect(await store.upsertVm(again)).toEqual(expected);
        expect(await store.getVmById(first.id)).toEqual(expected);
        expect(await store.getVmById(again.id)).toBeUndefined();
        expect(await store.getVmByCredentialHash(again.credentialHash)).toEqual(expected);
        expect(await store.getVmByCredentialHash(first.credentialHash)).toBeUndefined();
        expect(await store.listVms(subA)).toHaveLength(1);
      });

      it('lists by resource group and name, case-folded, optionally in one resource group', async () => {
        const records = [
          vm(subA, { resourceGroup: 'b-rg', name: 'alpha' }),
          vm(subA, { resourceGroup: 'A-rg', name: 'Zulu' }),
          vm(subA, { resourceGroup: 'a-RG', name: 'bravo' }),
          vm(subA, { resourceGroup: 'A-rg', name: 'Alpha' }),
          vm(subB, { resourceGroup: 'A-rg', name: 'other' }),
        ];
        for (const record of records) await store.upsertVm(record);
        const names = (list: VmRecord[]): string[] =>
          list.map((v) => `${v.resourceGroup}/${v.name}`);
        expect(names(await store.listVms(subA))).toEqual([
          'A-rg/Alpha',
          'a-RG/bravo',
          'A-rg/Zulu',
          'b-rg/alpha',
        ]);
        expect(names(await store.listVms(subA, 'B-RG'))).toEqual(['b-rg/alpha']);
        expect(await store.listVms(subA, 'none')).toEqual([]);
      });

      it('touches and deletes', async () => {
        const record = vm(subA);
        await store.upsertVm(record);
        await store.touchVm(record.id, at(50));
        expect((await store.getVmById(record.id))?.lastSeenAt).toEqual(at(50));
        expect(await store.deleteVm(record.id)).toBe(true);
        expect(await store.getVmById(record.id)).toBeUndefined();
        expect(await store.deleteVm(record.id)).toBe(false);
      });
    });

    describe('network watchers', () => {
      it('creates, then updates location and tags keeping the casing and creation time', async () => {
        const record = watcher(subA);
        expect(await store.putWatcher(record)).toEqual({ record, created: true });

        const update = watcher(subA, {
          resourceGroup: 'networkwatcherrg',
          name: 'NETWORKWATCHER_WESTUS',
          location: 'eastus',
          tags: { team: 'sre', cost: '42' },
          createdAt: at(200),
        });
        const result = await store.putWatcher(update);
        expect(result.created).toBe(false);
        expect(result.record).toMatchObject({
          subscriptionId: subA,
          resourceGroup: 'NetworkWatcherRG',
          name: 'NetworkWatcher_westus',
          location: 'eastus',
          tags: { team: 'sre', cost: '42' },
          createdAt: at(3),
        });
        expect(await store.getWatcher(subA, 'NETWORKWATCHERRG', 'networkwatcher_westus')).toEqual(
          result.record,
        );
        expect(await store.findWatcherByLocation(subA, 'eastus')).toEqual(result.record);
        expect(await store.findWatcherByLocation(subA, 'westus')).toBeUndefined();
        expect(await store.findWatcherByLocation(subB, 'eastus')).toBeUndefined();
        expect(await store.listWatchers(subA)).toEqual([result.record]);
      });

      it('createWatcherIfAbsent creates only when neither the name nor the location is taken', async () => {
        const first = watcher(subA, { location: 'eastus', tags: { owner: 'net-team' } });
        expect(await store.createWatcherIfAbsent(first)).toEqual(first);
        // Same name, other location: nothing changes (not the location, not the tags).
        expect(
          await store.createWatcherIfAbsent(
            watcher(subA, { location: 'westus', tags: {}, etag: randomUUID() }),
          ),
        ).toBeUndefined();
        // Same location, other name: nothing is created.
        expect(
          await store.createWatcherIfAbsent(watcher(subA, { name: 'other', location: 'eastus' })),
        ).toBeUndefined();
        expect(await store.listWatchers(subA)).toEqual([first]);
        // Concurrent creates of one watcher: exactly one wins.
        const racers = await Promise.all(
          [1, 2, 3, 4].map((i) =>
            store.createWatcherIfAbsent(
              watcher(subB, { location: 'l9', tags: { n: String(i) }, etag: randomUUID() }),
            ),
          ),
        );
        expect(racers.filter((r) => r !== undefined)).toHaveLength(1);
        expect(await store.listWatchers(subB)).toEqual(racers.filter((r) => r !== undefined));
      });

      it('keeps one watcher per subscription and location', async () => {
        await store.putWatcher(watcher(subA));
        await expect(store.putWatcher(watcher(subA, { name: 'second' }))).rejects.toThrow();
        // Another subscription has its own.
        expect((await store.putWatcher(watcher(subB))).created).toBe(true);
      });

      it('lists by resource group and name, optionally in one resource group', async () => {
        await store.putWatcher(
          watcher(subA, { resourceGroup: 'rg-b', name: 'w1', location: 'l1' }),
        );
        await store.putWatcher(
          watcher(subA, { resourceGroup: 'RG-A', name: 'W2', location: 'l2' }),
        );
        await store.putWatcher(
          watcher(subA, { resourceGroup: 'rg-a', name: 'w1', location: 'l3' }),
        );
        await store.putWatcher(
          watcher(subB, { resourceGroup: 'rg-a', name: 'w0', location: 'l1' }),
        );
        const names = (list: NetworkWatcherRecord[]): string[] =>
          list.map((w) => `${w.resourceGroup}/${w.name}`);
        expect(names(await store.listWatchers(subA))).toEqual(['rg-a/w1', 'RG-A/W2', 'rg-b/w1']);
        expect(names(await store.listWatchers(subA, 'Rg-A'))).toEqual(['rg-a/w1', 'RG-A/W2']);
      });

      it('deleting a watcher deletes its sessions and no others', async () => {
        await store.putWatcher(watcher(subA));
        await store.putWatcher(
          watcher(subA, { name: 'NetworkWatcher_eastus', location: 'eastus' }),
        );
        const doomed = [session(subA, { name: 'a' }), session(subA, { name: 'b' })];
        const kept = session(subA, {
          name: 'a',
          watcherName: 'NetworkWatcher_eastus',
          location: 'eastus',
        });
        for (const record of [...doomed, kept]) await store.createSession(record, 10);

        expect(await store.deleteWatcher(subA, 'networkwatcherrg', 'NETWORKWATCHER_WESTUS')).toBe(
          true,
        );
        expect(await store.getWatcher(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus')).toBe(
          undefined,
        );
        for (const record of doomed) expect(await store.getSessionById(record.id)).toBeUndefined();
        expect(await store.getSessionById(kept.id)).toEqual(kept);
        expect(await store.deleteWatcher(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus')).toBe(
          false,
        );
      });
    });

    describe('sessions', () => {
      it('creates and reads back every field; lookups fold case and keep the casing', async () => {
        const record = session(subA, {
          status: 'Stopped',
          stopReason: 'TimeExceeded',
          errors: [{ code: 'CaptureFailed', message: 'tcpdump exited' }],
          captureStartTime: at(10),
          stopTime: at(20),
          progress: { packets: 12, bytes: 3456, kernelDrops: 1, at: at(19) },
          files: ['/captures/c_0.pcap', '/captures/c_1.pcap'],
          stopRequested: 'ManualIntervention',
          deleteRequested: true,
        });
        expect(await store.createSession(record, 10)).toEqual({ kind: 'created', session: record });
        expect(await store.getSessionById(record.id)).toEqual(record);
        expect(
          await store.getSession(subA, 'NETWORKWATCHERRG', 'networkwatcher_WESTUS', 'capture-1'),
        ).toEqual(record);
        expect(
          await store.getSession(subB, 'NetworkWatcherRG', 'NetworkWatcher_westus', 'Capture-1'),
        ).toBeUndefined();
        expect(await store.getSessionById(randomUUID())).toBeUndefined();
      });

      it("returns 'exists' with the stored session for the same name in other casing", async () => {
        const first = session(subA);
        await store.createSession(first, 10);
        const again = session(subA, {
          resourceGroup: 'networkwatcherrg',
          watcherName: 'NETWORKWATCHER_westus',
          name: 'CAPTURE-1',
        });
        expect(await store.createSession(again, 10)).toEqual({ kind: 'exists', session: first });
        expect(await store.getSessionById(again.id)).toBeUndefined();
      });

      it("returns 'exists' even when the quota is full", async () => {
        const first = session(subA);
        await store.createSession(first, 1);
        expect(await store.createSession(session(subA), 1)).toEqual({
          kind: 'exists',
          session: first,
        });
      });

      it('creates one of many concurrent creates of the same name', async () => {
        const names = ['dup', 'DUP', 'Dup', 'dUp', 'duP', 'DuP', 'dUP', 'DUp', 'dup', 'DUP'];
        const results = await Promise.all(
          names.map((n) => store.createSession(session(subA, { name: n }), 100)),
        );
        expect(kinds(results)).toEqual({ created: 1, exists: 9 });
        const created = results.find((r) => r.kind === 'created');
        for (const result of results) {
          if (result.kind === 'exists' && created?.kind === 'created') {
            expect(result.session).toEqual(created.session);
          }
        }
      });

      it('counts NotStarted and Running sessions per subscription and location for the quota', async () => {
        const running = session(subA, { name: 'a', status: 'Running' });
        await store.createSession(running, 2);
        await store.createSession(session(subA, { name: 'b', status: 'NotStarted' }), 2);
        expect(await store.createSession(session(subA, { name: 'c' }), 2)).toEqual({
          kind: 'quota-exceeded',
          active: 2,
        });
        // Stopped and Error sessions do not count.
        expect(
          (await store.createSession(session(subA, { name: 'd', status: 'Stopped' }), 3)).kind,
        ).toBe('created');
        expect(
          (await store.createSession(session(subA, { name: 'e', status: 'Error' }), 3)).kind,
        ).toBe('created');
        expect((await store.createSession(session(subA, { name: 'f' }), 3)).kind).toBe('created');
        expect(await store.createSession(session(subA, { name: 'g' }), 3)).toEqual({
          kind: 'quota-exceeded',
          active: 3,
        });
        // A session that stops frees its place.
        await store.updateSession(running.id, { status: 'Stopped' });
        expect((await store.createSession(session(subA, { name: 'g' }), 3)).kind).toBe('created');
        // Another location, another subscription: their own quota.
        const eastus = { location: 'eastus', watcherName: 'NetworkWatcher_eastus' };
        expect((await store.createSession(session(subA, { ...eastus, name: 'a' }), 1)).kind).toBe(
          'created',
        );
        expect((await store.createSession(session(subB, { name: 'a' }), 1)).kind).toBe('created');
        expect(await store.createSession(session(subB, { name: 'b' }), 1)).toEqual({
          kind: 'quota-exceeded',
          active: 1,
        });
      });

      it('never exceeds the quota under concurrent creates', async () => {
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            store.createSession(session(subA, { name: `c${i}` }), 10),
          ),
        );
        expect(kinds(results)).toEqual({ created: 10, 'quota-exceeded': 30 });
        for (const result of results) {
          if (result.kind === 'quota-exceeded') expect(result.active).toBe(10);
        }
        expect((await store.countSessionsByStatus()).NotStarted).toBe(10);
      });

      it('keeps separate quotas exact under concurrent creates across locations and subscriptions', async () => {
        const scopes = [
          { subscriptionId: subA, location: 'westus' },
          { subscriptionId: subA, location: 'eastus' },
          { subscriptionId: subB, location: 'westus' },
        ];
        const creates: Promise<CreateSessionResult>[] = [];
        for (let i = 0; i < 20; i++) {
          for (const { subscriptionId, location } of scopes) {
            const record = session(subscriptionId, {
              location,
              watcherName: `NetworkWatcher_${location}`,
              name: `c${i}`,
            });
            creates.push(store.createSession(record, 5));
          }
        }
        const results = await Promise.all(creates);
        expect(kinds(results)).toEqual({ created: 15, 'quota-exceeded': 45 });
        const live = await store.listSessionsByStatus(['NotStarted']);
        for (const scope of scopes) {
          const inScope = live.filter(
            (s) => s.subscriptionId === scope.subscriptionId && s.location === scope.location,
          );
          expect(inScope).toHaveLength(5);
        }
      });

      it('pages through a watcher by case-folded name, each session once', async () => {
        const names = ['delta', 'Alpha', 'charlie', 'Echo', 'bravo', 'Foxtrot', 'golf'];
        for (const n of names) await store.createSession(session(subA, { name: n }), 100);
        // Same watcher name in another resource group and subscription: not listed.
        await store.createSession(session(subA, { resourceGroup: 'other', name: 'aaa' }), 100);
        await store.createSession(session(subB, { name: 'aaa' }), 100);
        const expected = [...names].sort((a, b) =>
          a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : 0,
        );

        for (const limit of [1, 2, 3, 7, 50]) {
          const all = await readAllPages(
            (after) =>
              store.listSessions(subA, 'networkwatcherrg', 'NETWORKWATCHER_WESTUS', {
                limit,
                after,
              }),
            Math.ceil(names.length / limit) + 1,
          );
          expect(all.map((s) => s.name)).toEqual(expected);
        }
        const first = await store.listSessions(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus', {
          limit: 3,
        });
        expect(first.items).toHaveLength(3);
        expect(first.next).not.toBeNull();
        expect(
          await store.listSessions(subA, 'NetworkWatcherRG', 'nobody', { limit: 3, after: null }),
        ).toEqual({ items: [], next: null });
      });

      it('rejects a page cursor it did not make as InvalidRequestContent', async () => {
        for (const after of ['not a cursor', 'eyJ4IjoxfQ', '']) {
          await expect(
            store.listSessions(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus', {
              limit: 2,
              after,
            }),
          ).rejects.toMatchObject({ code: 'InvalidRequestContent' });
          await expect(store.listAudit(subA, { limit: 2, after })).rejects.toMatchObject({
            code: 'InvalidRequestContent',
          });
        }
      });

      it('lists by VM and by status', async () => {
        const a = session(subA, { name: 'a', vmId: 'vm-1', status: 'Running' });
        const b = session(subA, { name: 'b', vmId: 'vm-1', status: 'Stopped' });
        const c = session(subB, { name: 'c', vmId: 'vm-2', status: 'Running' });
        const d = session(subB, { name: 'd', vmId: 'vm-2', status: 'NotStarted' });
        for (const record of [a, b, c, d]) await store.createSession(record, 10);
        const ids = (list: SessionRecord[]): string[] => list.map((s) => s.id).sort();

        expect(ids(await store.listSessionsByVm('vm-1'))).toEqual(ids([a, b]));
        expect(await store.listSessionsByVm('vm-1', ['Running'])).toEqual([a]);
        expect(await store.listSessionsByVm('vm-1', [])).toEqual([]);
        expect(await store.listSessionsByVm('vm-9')).toEqual([]);
        expect(ids(await store.listSessionsByStatus(['Running', 'NotStarted']))).toEqual(
          ids([a, c, d]),
        );
        expect(await store.listSessionsByStatus(['Error'])).toEqual([]);
      });

      it('updates: patched fields change, others stay, etag and updatedAt are renewed', async () => {
        const record = session(subA);
        await store.createSession(record, 10);

        const before = Date.now();
        const running = await store.updateSession(record.id, {
          status: 'Running',
          captureStartTime: at(30),
          progress: { packets: 5, bytes: 500, kernelDrops: 0, at: at(31) },
        });
        expect(running).toBeDefined();
        expect(running?.etag).not.toBe(record.etag);
        expect(running?.updatedAt.getTime()).toBeGreaterThanOrEqual(before);
        expect(running).toEqual({
          ...record,
          status: 'Running',
          captureStartTime: at(30),
          progress: { packets: 5, bytes: 500, kernelDrops: 0, at: at(31) },
          etag: running?.etag,
          updatedAt: running?.updatedAt,
        });
        expect(await store.getSessionById(record.id)).toEqual(running);

        const stopping = await store.updateSession(record.id, {
          stopRequested: 'ManualIntervention',
          deleteRequested: true,
        });
        expect(stopping?.etag).not.toBe(running?.etag);
        expect(stopping).toMatchObject({
          status: 'Running',
          stopRequested: 'ManualIntervention',
          deleteRequested: true,
        });

        const stopped = await store.updateSession(record.id, {
          status: 'Stopped',
          stopReason: 'ManualIntervention',
          stopTime: at(40),
          files: ['/captures/c.pcap'],
          errors: [{ code: 'X', message: 'y' }],
          stopRequested: null,
          progress: null,
        });
        expect(stopped).toMatchObject({
          status: 'Stopped',
          stopReason: 'ManualIntervention',
          stopTime: at(40),
          files: ['/captures/c.pcap'],
          errors: [{ code: 'X', message: 'y' }],
          stopRequested: null,
          progress: null,
          deleteRequested: true,
          captureStartTime: at(30),
          name: 'Capture-1',
          createdAt: record.createdAt,
        });
        expect(await store.getSessionById(record.id)).toEqual(stopped);
      });

      it('stores and clears the upload state', async () => {
        const record = session(subA);
        await store.createSession(record, 10);
        const upload = {
          state: 'Completed' as const,
          blobs: [{ url: 'http://127.0.0.1:10000/acct/network-watcher-logs/x.cap', size: 1234 }],
          error: null,
        };
        expect((await store.updateSession(record.id, { upload }))?.upload).toEqual(upload);
        expect((await store.getSessionById(record.id))?.upload).toEqual(upload);
        const failed = {
          state: 'Failed' as const,
          blobs: [],
          error: { code: 'StorageFailed', message: 'gone' },
        };
        await store.updateSession(record.id, { upload: failed });
        expect((await store.getSessionById(record.id))?.upload).toEqual(failed);
        await store.updateSession(record.id, { upload: null });
        expect((await store.getSessionById(record.id))?.upload).toBeNull();
      });

      it('update returns undefined for a missing session', async () => {
        expect(await store.updateSession(randomUUID(), { status: 'Stopped' })).toBeUndefined();
      });

      it('deletes', async () => {
        const record = session(subA);
        await store.createSession(record, 10);
        expect(await store.deleteSession(record.id)).toBe(true);
        expect(await store.getSessionById(record.id)).toBeUndefined();
        expect(await store.deleteSession(record.id)).toBe(false);
        // The name is free again.
        expect((await store.createSession(session(subA), 10)).kind).toBe('created');
      });

      it('grants ring file numbers within the window and the cap, again when granted before', async () => {
        const id = randomUUID();
        const bounds = { window: 3, maxGrants: 5 };
        expect(await store.grantRingFile(id, 4, bounds)).toEqual({
          kind: 'refused',
          highest: 0,
          count: 0,
        });
        expect(await store.grantRingFile(id, 3, bounds)).toEqual({ kind: 'granted', again: false });
        expect(await store.grantRingFile(id, 3, bounds)).toEqual({ kind: 'granted', again: true });
        expect(await store.grantRingFile(id, 1, bounds)).toEqual({ kind: 'granted', again: false });
        expect(await store.grantRingFile(id, 7, bounds)).toMatchObject({ kind: 'refused' });
        for (const n of [6, 9, 2 ** 40]) {
          expect((await store.grantRingFile(id, n, bounds)).kind, String(n)).toBe(
            n === 2 ** 40 ? 'refused' : 'granted',
          );
        }
        expect(await store.grantRingFile(id, 12, bounds)).toEqual({
          kind: 'granted',
          again: false,
        });
        expect(await store.grantRingFile(id, 13, bounds)).toEqual({
          kind: 'refused',
          highest: 12,
          count: 5,
        });
        expect(await store.listRingGrants(id)).toEqual([1, 3, 6, 9, 12]);
        expect(await store.listRingGrants(randomUUID())).toEqual([]);
      });

      it('deleting a session, or its watcher, deletes its ring grants', async () => {
        const record = session(subA);
        await store.createSession(record, 10);
        await store.grantRingFile(record.id, 1, { window: 1, maxGrants: 10 });
        await store.deleteSession(record.id);
        expect(await store.listRingGrants(record.id)).toEqual([]);
        const again = session(subA, { id: randomUUID() });
        await store.putWatcher(watcher(subA));
        await store.createSession(again, 10);
        await store.grantRingFile(again.id, 1, { window: 1, maxGrants: 10 });
        await store.deleteWatcher(subA, again.resourceGroup, again.watcherName);
        expect(await store.listRingGrants(again.id)).toEqual([]);
      });

      it('counts by status with all four keys', async () => {
        expect(await store.countSessionsByStatus()).toEqual({
          NotStarted: 0,
          Running: 0,
          Stopped: 0,
          Error: 0,
        });
        await store.createSession(session(subA, { name: 'a', status: 'Running' }), 10);
        await store.createSession(session(subA, { name: 'b', status: 'Running' }), 10);
        await store.createSession(session(subB, { name: 'c', status: 'Error' }), 10);
        expect(await store.countSessionsByStatus()).toEqual({
          NotStarted: 0,
          Running: 2,
          Stopped: 0,
          Error: 1,
        });
      });
    });

    describe('operations', () => {
      it('creates and gets within the subscription', async () => {
        const record = operation(subA, 's1');
        await store.createOperation(record);
        expect(await store.getOperation(subA, record.id)).toEqual(record);
        expect(await store.getOperation(subB, record.id)).toBeUndefined();
        expect(await store.getOperation(subA, randomUUID())).toBeUndefined();
      });

      it('lists the open operations of a session', async () => {
        const open = operation(subA, 's1', { kind: 'stop' });
        const done = operation(subA, 's1', { status: 'Succeeded' });
        const otherSession = operation(subA, 's2');
        for (const record of [open, done, otherSession]) await store.createOperation(record);
        expect(await store.listOpenOperations('s1')).toEqual([open]);
        expect(await store.listOpenOperations('s3')).toEqual([]);
      });

      it('lists every operation still in progress, oldest first', async () => {
        const newer = operation(subB, 's8', { createdAt: at(7), updatedAt: at(7) });
        const older = operation(subA, 's9', { kind: 'delete', createdAt: at(6), updatedAt: at(6) });
        const done = operation(subA, 's9', { status: 'Failed' });
        for (const record of [newer, older, done]) await store.createOperation(record);
        const open = await store.listInProgressOperations();
        const ids = open.map((o) => o.id);
        expect(ids).toEqual(expect.arrayContaining([newer.id, older.id]));
        expect(ids).not.toContain(done.id);
        expect(ids.indexOf(older.id)).toBeLessThan(ids.indexOf(newer.id));
        expect(open.find((o) => o.id === older.id)).toEqual(older);
      });

      it('updates status and error, renewing updatedAt', async () => {
        const record = operation(subA, 's1');
        await store.createOperation(record);
        const before = Date.now();
        const error = { code: 'CaptureFailed', message: 'no such interface' };
        await store.updateOperation(record.id, { status: 'Failed', error });
        const failed = await store.getOperation(subA, record.id);
        expect(failed).toMatchObject({ status: 'Failed', error, createdAt: record.createdAt });
        expect(failed?.updatedAt.getTime()).toBeGreaterThanOrEqual(before);
        expect(await store.listOpenOperations('s1')).toEqual([]);

        // error omitted: kept; null: cleared.
        await store.updateOperation(record.id, { status: 'Failed' });
        expect((await store.getOperation(subA, record.id))?.error).toEqual(error);
        await store.updateOperation(record.id, { status: 'Succeeded', error: null });
        expect(await store.getOperation(subA, record.id)).toMatchObject({
          status: 'Succeeded',
          error: null,
        });
      });
    });

    describe('audit', () => {
      it('lists a subscription newest first, with the detail', async () => {
        const old = audit(subA, { at: at(1), detail: { nested: { ok: true }, list: [1, 2] } });
        const recent = audit(subA, { at: at(2), action: 'packetCapture.stop' });
        await store.appendAudit(old);
        await store.appendAudit(recent);
        await store.appendAudit(audit(subB));
        expect(await store.listAudit(subA, { limit: 10 })).toEqual({
          items: [recent, old],
          next: null,
        });
      });

      it('pages newest first, each record once, including records of the same time', async () => {
        const seconds = [3, 1, 1, 2, 1, 3, 0, 2, 1];
        const records = seconds.map((s) => audit(subA, { at: at(s) }));
        for (const record of records) await store.appendAudit(record);
        await store.appendAudit(audit(subB, { at: at(2) }));

        const whole = await store.listAudit(subA, { limit: 100 });
        expect(whole.next).toBeNull();
        expect(whole.items.map((r) => r.id).sort()).toEqual(records.map((r) => r.id).sort());
        const times = whole.items.map((r) => r.at.getTime());
        expect(times).toEqual([...times].sort((a, b) => b - a));

        for (const limit of [1, 2, 4, 9]) {
          const all = await readAllPages(
            (after) => store.listAudit(subA, { limit, after }),
            Math.ceil(records.length / limit) + 1,
          );
          expect(all).toEqual(whole.items);
        }
      });
    });

    it('closes twice without error', async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
