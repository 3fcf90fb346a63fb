import type { Kysely, Migration } from 'kysely';

/**
 * Hosts as scale-set instances (issue 11): a VM may be instance `instance_id` of scale set
 * `scale_set` (its name then `{scale_set}_{instance_id}`); both null for a plain VM. Nullable
 * columns, one ALTER each (SQLite adds one column per statement).
 */
export const scaleSets: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    for (const column of ['scale_set', 'scale_set_key', 'instance_id']) {
      await db.schema.alterTable('vms').addColumn(column, 'text').execute();
    }
    // listScaleSetInstances: one scale set's instances.
    await db.schema
      .createIndex('vms_scale_set_idx')
      .on('vms')
      .columns(['subscription_id', 'resource_group_key', 'scale_set_key'])
      .execute();
  },
  async down(db: Kysely<unknown>): Promise<void> {
    await db.schema.dropIndex('vms_scale_set_idx').execute();
    for (const column of ['instance_id', 'scale_set_key', 'scale_set']) {
      await db.schema.alterTable('vms').dropColumn(column).execute();
    }
  },
};
