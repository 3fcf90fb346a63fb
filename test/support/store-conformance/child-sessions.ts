/**
 * The store conformance suite for scale-set captures: a parent session and its children (one per
 * instance) — children are never listed, never counted by the quota, found by their parent.
 */
import { describe, expect, it } from 'vitest';
import type { SessionRecord, Store } from '../../../src/store/store.js';
import { readAllPages, session, subA, watcher } from './fixtures.js';

/** A child of `parent` for instance `instanceId`, named as the control plane names one. */
function child(parent: SessionRecord, instanceId: string): SessionRecord {
  return session(parent.subscriptionId, {
    name: `${parent.name}/${instanceId}`,
    vmId: `vm-${instanceId}`,
    parentId: parent.id,
    instanceId,
  });
}

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeChildSessionConformance(store: Store): void {
  describe('scale-set capture children', () => {
    it('reads back parentId and instanceId; a plain session has both null', async () => {
      const parent = session(subA, { vmId: 'vmss:scale-set-key' });
      await store.createSession(parent, 10);
      const first = child(parent, '0');
      expect(await store.createSession(first, 10)).toEqual({ kind: 'created', session: first });
      expect(await store.getSessionById(first.id)).toEqual(first);
      expect(await store.getSessionById(parent.id)).toMatchObject({
        parentId: null,
        instanceId: null,
      });
    });

    it('lists a parent’s children by instance id as a number, and only them', async () => {
      const parent = session(subA, { name: 'Fleet' });
      const other = session(subA, { name: 'Other' });
      await store.createSession(parent, 10);
      await store.createSession(other, 10);
      for (const id of ['10', '2', '0', '1']) await store.createSession(child(parent, id), 10);
      await store.createSession(child(other, '3'), 10);
      const children = await store.listChildSessions(parent.id);
      expect(children.map((c) => c.instanceId)).toEqual(['0', '1', '2', '10']);
      expect(children.every((c) => c.parentId === parent.id)).toBe(true);
      expect(await store.listChildSessions(children[0]!.id)).toEqual([]);
    });

    it('never lists children under the watcher', async () => {
      await store.putWatcher(watcher(subA));
      const parent = session(subA, { name: 'Fleet' });
      await store.createSession(parent, 10);
      for (const id of ['0', '1', '2']) await store.createSession(child(parent, id), 10);
      const listed = await readAllPages(
        (after) =>
          store.listSessions(subA, 'NetworkWatcherRG', 'NetworkWatcher_westus', {
            limit: 1,
            after,
          }),
        10,
      );
      expect(listed.map((s) => s.id)).toEqual([parent.id]);
    });

    it('counts a parent once against the quota and never refuses a child', async () => {
      const parent = session(subA, { name: 'Fleet' });
      expect((await store.createSession(parent, 1)).kind).toBe('created');
      // The quota is full with the parent, yet every child is created...
      for (const id of ['0', '1', '2']) {
        expect((await store.createSession(child(parent, id), 1)).kind).toBe('created');
      }
      // ...and counts nothing: with a quota of 2, one more capture fits, and only one.
      expect((await store.createSession(session(subA, { name: 'Two' }), 2)).kind).toBe('created');
      expect(await store.createSession(session(subA, { name: 'Three' }), 2)).toEqual({
        kind: 'quota-exceeded',
        active: 2,
      });
      expect(await store.countSessionsByStatus()).toMatchObject({ NotStarted: 2 });
    });

    it('a child’s name is taken once; re-creating it answers exists', async () => {
      const parent = session(subA, { name: 'Fleet' });
      await store.createSession(parent, 10);
      const first = child(parent, '0');
      await store.createSession(first, 10);
      expect(await store.createSession(child(parent, '0'), 10)).toEqual({
        kind: 'exists',
        session: first,
      });
    });

    it('deleting a parent deletes its children and their ring grants', async () => {
      const parent = session(subA, { name: 'Fleet' });
      const other = session(subA, { name: 'Other' });
      await store.createSession(parent, 10);
      await store.createSession(other, 10);
      const kids = [child(parent, '0'), child(parent, '1')];
      for (const c of kids) await store.createSession(c, 10);
      const kept = child(other, '0');
      await store.createSession(kept, 10);
      const bounds = { window: 4, maxGrants: 10 };
      await store.grantRingFile(kids[0]!.id, 1, bounds);
      await store.grantRingFile(kept.id, 1, bounds);

      expect(await store.deleteSession(parent.id)).toBe(true);
      expect(await store.getSessionById(parent.id)).toBeUndefined();
      for (const c of kids) expect(await store.getSessionById(c.id)).toBeUndefined();
      expect(await store.listChildSessions(parent.id)).toEqual([]);
      expect(await store.listRingGrants(kids[0]!.id)).toEqual([]);
      expect(await store.getSessionById(kept.id)).toEqual(kept);
      expect(await store.listRingGrants(kept.id)).toEqual([1]);
    });

    it('finds a child by its VM and by status, as any session', async () => {
      const parent = session(subA, { name: 'Fleet', status: 'Running' });
      await store.createSession(parent, 10);
      const running = { ...child(parent, '0'), status: 'Running' as const };
      await store.createSession(running, 10);
      expect(await store.listSessionsByVm('vm-0', ['Running'])).toEqual([running]);
      const live = await store.listSessionsByStatus(['Running']);
      expect(live.map((s) => s.id).sort()).toEqual([parent.id, running.id].sort());
    });
  });
}
