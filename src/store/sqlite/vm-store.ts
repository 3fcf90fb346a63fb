/** VmStore on SQLite: vMs: the hosts running the agent. */
import type { Kysely } from 'kysely';
import { WirewatchError } from '../../model/errors.js';
import { foldName } from '../migrations/schema.js';
import type { StoreDatabase } from '../migrations/schema.js';
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
      if (limits === undefined) {
        const inserted = await insert(db);
        return inserted && toVm(inserted);
      }
      // The counts, the insert and the token's use in one transaction: on SQLite it holds the
      // write lock, so concurrent enrollments cannot both take the last place.
      return db.transaction().execute(async (trx) => {
        const tokenId = limits.enrollmentTokenId;
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
        const max = limits.maxVmsPerSubscription;
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
