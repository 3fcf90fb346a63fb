/** The store conformance suite for packet capture sessions: quota, paging, patches, ring grants. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CreateSessionResult, SessionRecord, Store } from '../../../src/store/store.js';
import { at, subA, subB, watcher, session, readAllPages, kinds } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeSessionConformance(store: Store): void {
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

    it('reads the resolved capture back from the stored properties, the same as at create', async () => {
      const record = session(subA, {
        properties: {
          continuousCapture: true,
          timeLimitInSeconds: 0,
          captureSettings: { fileCount: 0, fileSizeInBytes: 4096, sessionTimeLimitInSeconds: 0 },
          storageLocation: { localPath: '/var/captures/ring.cap' },
          filters: [{ protocol: 'udp', remotePort: '53' }],
          includeOwnTraffic: true,
        },
      });
      await store.createSession(record, 10);
      const read = await store.getSessionById(record.id);
      expect(read?.properties).toEqual(record.properties);
      expect(read?.capture).toEqual(record.capture);
      expect(read?.capture).toMatchObject({
        ring: { fileCount: 10000, fileSizeInBytes: 4096, sessionTimeLimitInSeconds: 18000 },
        durationSeconds: 18000,
        filters: [{ protocol: 'UDP', remotePort: '53' }],
        storage: {
          localFile: {
            path: '/var/captures/ring.cap',
            field: 'properties.storageLocation.localPath',
          },
        },
        includeOwnTraffic: true,
      });
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
}
