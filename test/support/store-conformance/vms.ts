/** The store conformance suite for VMs: enrollment, its limits, lookups. */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Store, VmRecord } from '../../../src/store/store.js';
import { at, enrollmentToken, instance, subA, subB, vm } from './fixtures.js';

/** `store` is the store the suite opened for the running test (see describeStoreConformance). */
export function describeVmConformance(store: Store): void {
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
      const token = enrollmentToken(subA, { maxUses: 3 });
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
      const names = (list: VmRecord[]): string[] => list.map((v) => `${v.resourceGroup}/${v.name}`);
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

    describe('scale-set instances', () => {
      it("keeps an instance's scale set and id; lists a scale set's instances by number, case-insensitively", async () => {
        const ids = ['10', '2', '0', '1'];
        for (const id of ids) expect(await store.createVm(instance(subA, 'Web', id))).toBeDefined();
        await store.createVm(instance(subA, 'web2', '3'));
        await store.createVm(instance(subA, 'Web', '4', { resourceGroup: 'other-rg' }));
        await store.createVm(instance(subB, 'Web', '5'));
        await store.upsertVm(vm(subA, { name: 'plain' }));

        const one = await store.getVm(subA, 'fleet-rg', 'WEB_2');
        expect(one).toMatchObject({ name: 'Web_2', scaleSet: 'Web', instanceId: '2' });
        expect(await store.getVmById(one!.id)).toEqual(one);
        expect((await store.getVm(subA, 'Fleet-RG', 'plain'))?.scaleSet).toBeNull();
        expect((await store.getVm(subA, 'Fleet-RG', 'plain'))?.instanceId).toBeNull();

        const listed = await store.listScaleSetInstances(subA, 'FLEET-RG', 'WEB');
        expect(listed.map((v) => v.instanceId)).toEqual(['0', '1', '2', '10']);
        expect(listed.every((v) => v.scaleSet === 'Web')).toBe(true);
        expect(await store.listScaleSetInstances(subA, 'Fleet-RG', 'none')).toEqual([]);
        expect(await store.listScaleSetInstances(subB, 'Fleet-RG', 'web')).toHaveLength(1);
        // listVms lists plain VMs and instances alike.
        expect(await store.listVms(subA, 'Fleet-RG')).toHaveLength(6);
      });

      it('an instance id is taken once: of racers for one id one wins', async () => {
        const racers = await Promise.all(
          [1, 2, 3, 4].map(() => store.createVm(instance(subA, 'web', '0'))),
        );
        expect(racers.filter((r) => r !== undefined)).toHaveLength(1);
        expect(await store.listScaleSetInstances(subA, 'Fleet-RG', 'web')).toHaveLength(1);
      });

      it('instances count against maxVmsPerSubscription and use the token', async () => {
        const token = enrollmentToken(subA, { maxUses: 10 });
        await store.createEnrollmentToken(token);
        await store.createVm(vm(subA, { name: 'plain' }));
        const limits = { enrollmentTokenId: token.id, maxVmsPerSubscription: 3 };
        expect(await store.createVm(instance(subA, 'web', '0'), limits)).toBeDefined();
        expect(await store.createVm(instance(subA, 'web', '1'), limits)).toBeDefined();
        await expect(store.createVm(instance(subA, 'web', '2'), limits)).rejects.toMatchObject({
          code: 'EnrollmentLimitReached',
        });
        expect((await store.findEnrollmentTokenByHash(token.hash))?.uses).toBe(2);
      });

      it('a scale set has one location: an instance elsewhere is refused, racers included', async () => {
        const racers = await Promise.allSettled(
          ['westus', 'eastus', 'westus', 'eastus'].map((location, i) =>
            store.createVm(instance(subA, 'web', String(i), { location })),
          ),
        );
        const won = racers.filter((r) => r.status === 'fulfilled');
        expect(won.length).toBeGreaterThanOrEqual(1);
        for (const r of racers.filter((x) => x.status === 'rejected')) {
          expect(r.reason).toMatchObject({ code: 'InvalidLocation', target: 'location' });
        }
        const locations = new Set(
          (await store.listScaleSetInstances(subA, 'Fleet-RG', 'WEB')).map((v) => v.location),
        );
        expect(locations.size).toBe(1);
        expect(won).toHaveLength(2);
        // Another resource group's scale set of that name is another scale set.
        expect(
          await store.createVm(
            instance(subA, 'web', '0', { resourceGroup: 'other', location: 'northeurope' }),
          ),
        ).toBeDefined();
      });

      it('a takeover (upsertVm) of an instance keeps its scale set, id and location', async () => {
        const first = instance(subA, 'web', '0');
        await store.createVm(first);
        const again = instance(subA, 'WEB', '0', { hostname: 'rebuilt', location: 'eastus' });
        expect(await store.upsertVm(again)).toEqual({
          ...first,
          hostname: 'rebuilt',
          credentialHash: again.credentialHash,
        });
      });
    });
  });
}
