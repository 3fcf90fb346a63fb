/** VmStore on SQLite: vMs: the hosts running the agent. */
import type { Kysely } from 'kysely';
import { WirewatchError } from '../../model/errors.js';
import { foldName } from '../migrations/schema.js';
import type { StoreDatabase, VmsTable } from '../migrations/schema.js';
import { byName, iso, toVm, vmToRow } from '../sql/rows.js';
import type { VmEnrollmentLimits, VmRecord, VmStore } from '../store.js';

export function createSqliteVmStore(db: Kysely<StoreDatabase>): VmStore {
  return {
    async createVm(record: VmRecord, limits?: VmEnrollmentLimits): Promise<VmRecord | undefined> {
      const row = vmToRow(record);
      const insert = (db: Kysely<StoreDatabase>) =>
        db
          .insertInto('vms')
          .values(row)
          .onConflict((oc) =>
            oc.columns(['subscription_id', 'resource_group_key', 'name_key']).doNothing(),
          )
          .returningAll()
          .executeTakeFirst();
      if (limits === undefined && row.scale_set_key === null) {
        const inserted = await insert(db);
        return inserted && toVm(inserted);
      }
      // The checks, the insert and the token's use in one transaction: on SQLite it holds the
      // write lock, so concurrent enrollments cannot both take the last place, nor put the first
      // instances of one scale set in two locations.
      return db.transaction().execute(async (trx) => {
        if (row.scale_set_key !== null) await checkScaleSetLocation(trx, row);
        const tokenId = limits?.enrollmentTokenId;
        if (tokenId !== undefined) {
          const token = await trx
            .selectFrom('enrollment_tokens')
            .select(['max_uses', 'uses'])
            .where('id', '=', tokenId)
            .executeTakeFirst();
          if (token && token.max_uses !== null && token.uses >= token.max_uses) {
            throw new WirewatchError(
              'EnrollmentLimitReached',
              `This enrollment token has enrolled ${token.uses} VMs, all it may (maxUses ${token.max_uses}); create another enrollment token`,
            );
          }
        }
        const max = limits?.maxVmsPerSubscription;
        if (max !== undefined) {
          const { count } = await trx
            .selectFrom('vms')
            .select((eb) => eb.fn.countAll().as('count'))
            .where('subscription_id', '=', row.subscription_id)
            .executeTakeFirstOrThrow();
          if (Number(count) >= max) {
            throw new WirewatchError(
              'EnrollmentLimitReached',
              `Subscription '${row.subscription_id}' has ${Number(count)} VMs, the most this server allows (--max-vms-per-subscription ${max}); delete VMs no longer in use`,
            );
          }
        }
        const inserted = await insert(trx);
        if (inserted === undefined) return undefined;
        if (tokenId !== undefined) {
          await trx
            .updateTable('enrollment_tokens')
            .set((eb) => ({ uses: eb('uses', '+', 1) }))
            .where('id', '=', tokenId)
            .execute();
        }
        return toVm(inserted);
      });
    },

    async upsertVm(record: VmRecord): Promise<VmRecord> {
      // One statement, so atomic without a transaction; the conflict target is the folded name,
      // so a VM re-enrolling under another id keeps its first one.
      const row = await db
        .insertInto('vms')
        .values(vmToRow(record))
        .onConflict((oc) =>
          oc.columns(['subscription_id', 'resource_group_key', 'name_key']).doUpdateSet((eb) => ({
            credential_hash: eb.ref('excluded.credential_hash'),
            hostname: eb.ref('excluded.hostname'),
            capture_root: eb.ref('excluded.capture_root'),
          })),
        )
        .returningAll()
        .executeTakeFirstOrThrow();
      return toVm(row);
    },

    async getVmById(id: string): Promise<VmRecord | undefined> {
      const row = await db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toVm(row);
    },

    async getVmByCredentialHash(hash: string): Promise<VmRecord | undefined> {
      const row = await db
        .selectFrom('vms')
        .selectAll()
        .where('credential_hash', '=', hash)
        .executeTakeFirst();
      return row && toVm(row);
    },

    async getVm(
      subscriptionId: string,
      resourceGroup: string,
      name: string,
    ): Promise<VmRecord | undefined> {
      const row = await db
        .selectFrom('vms')
        .selectAll()
        .where((eb) => eb.and(byName(subscriptionId, foldName(resourceGroup), foldName(name))))
        .executeTakeFirst();
      return row && toVm(row);
    },

    async listVms(subscriptionId: string, resourceGroup?: string): Promise<VmRecord[]> {
      let query = db.selectFrom('vms').selectAll().where('subscription_id', '=', subscriptionId);
      if (resourceGroup !== undefined) {
        query = query.where('resource_group_key', '=', foldName(resourceGroup));
      }
      const rows = await query.orderBy('resource_group_key').orderBy('name_key').execute();
      return rows.map(toVm);
    },

    async listScaleSetInstances(
      subscriptionId: string,
      resourceGroup: string,
      scaleSet: string,
    ): Promise<VmRecord[]> {
      const rows = await db
        .selectFrom('vms')
        .selectAll()
        .where('subscription_id', '=', subscriptionId)
        .where('resource_group_key', '=', foldName(resourceGroup))
        .where('scale_set_key', '=', foldName(scaleSet))
        // Instance ids are decimal without leading zeros: by length, then text, is by number.
        .orderBy((eb) => eb.fn('length', ['instance_id']))
        .orderBy('instance_id')
        .execute();
      return rows.map(toVm);
    },

    async touchVm(id: string, lastSeenAt: Date): Promise<void> {
      await db
        .updateTable('vms')
        .set({ last_seen_at: iso(lastSeenAt) })
        .where('id', '=', id)
        .execute();
    },

    /** Leaves the VM's sessions: the control plane stops them (TargetDeleted) and they stay listed. */
    async deleteVm(id: string): Promise<boolean> {
      const result = await db.deleteFrom('vms').where('id', '=', id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
  };
}

/** Refuses an instance whose scale set has an instance in another location. */
async function checkScaleSetLocation(trx: Kysely<StoreDatabase>, row: VmsTable): Promise<void> {
  const other = await trx
    .selectFrom('vms')
    .select(['location', 'scale_set'])
    .where('subscription_id', '=', row.subscription_id)
    .where('resource_group_key', '=', row.resource_group_key)
    .where('scale_set_key', '=', row.scale_set_key)
    .where('location', '!=', row.location)
    .executeTakeFirst();
  if (other) {
    throw new WirewatchError(
      'InvalidLocation',
      `location: scale set '${other.scale_set ?? row.scale_set ?? ''}' in resource group '${row.resource_group}' is in '${other.location}', not '${row.location}'; enroll its instances with --location ${other.location}`,
      { target: 'location' },
    );
  }
}
