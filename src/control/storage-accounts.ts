import { WirewatchError } from '../model/errors.js';
import type { SessionRecord, StorageAccountRecord, Upserted } from '../store/store.js';
import { appendAudit } from './audit.js';
import type { StorageAccountRef } from '../model/capture-settings.js';
import type { Caller, ControlContext } from './control-context.js';
import { checkResourceGroupName } from './resource-ids.js';

/** Azure's storage account name rule: 3–24 lower-case letters and digits. */
const STORAGE_ACCOUNT_NAME = /^[a-z0-9]{3,24}$/;

export function storageAccountResourceId(
  subscriptionId: string,
  resourceGroup: string,
  name: string,
): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Storage/storageAccounts/${name}`;
}

/** A storage account as the native POST registers it. */
export interface StorageAccountPut {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  readonly connectionString: string;
}

/**
 * Parses a connection string and proves its endpoint and key work (the server wires
 * @azure/storage-blob: InvalidConnectionString, StorageAccountUnreachable,
 * StorageAccountAccessDenied); answers what the record keeps in the clear.
 */
export type StorageAccountProbe = (
  connectionString: string,
) => Promise<{ readonly accountName: string; readonly blobEndpoint: string }>;

/**
 * Storage accounts: registered with a connection string (which holds the account key: stored
 * sealed, used to mint SAS tokens and read blobs, never shown), read, listed, deleted; every
 * change audited without the secret.
 */
export class StorageAccounts {
  readonly #ctx: ControlContext;
  readonly #probe: StorageAccountProbe | undefined;

  constructor(ctx: ControlContext, probe: StorageAccountProbe | undefined) {
    this.#ctx = ctx;
    this.#probe = probe;
  }

  /** Registers the account, or updates it (same name, case-insensitive): 201 vs 200. */
  async put(input: StorageAccountPut, caller: Caller): Promise<Upserted<StorageAccountRecord>> {
    const { subscriptionId, resourceGroup, name, connectionString } = input;
    if (!STORAGE_ACCOUNT_NAME.test(name)) {
      throw new WirewatchError(
        'InvalidResourceName',
        `name: ${JSON.stringify(name.slice(0, 64))} is not a valid storage account name: 3 to 24 lower-case letters and digits`,
        { target: 'name' },
      );
    }
    checkResourceGroupName(resourceGroup, 'resourceGroup');
    if (!this.#probe) {
      throw new WirewatchError(
        'StorageAccountUnreachable',
        'connectionString: this server has no blob storage support configured',
        { target: 'connectionString' },
      );
    }
    const { accountName, blobEndpoint } = await this.#probe(connectionString);
    const upserted = await this.#ctx.store.putStorageAccount({
      subscriptionId,
      resourceGroup,
      name,
      accountName,
      blobEndpoint,
      connectionString,
      createdAt: this.#ctx.now(),
    });
    const { record, created } = upserted;
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: created ? 'storageAccount.create' : 'storageAccount.update',
      resourceId: storageAccountResourceId(subscriptionId, record.resourceGroup, record.name),
      detail: { accountName: record.accountName, blobEndpoint: record.blobEndpoint },
    });
    return upserted;
  }

  /** The account; ResourceNotFound (target accountName) when there is none. */
  async get(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<StorageAccountRecord> {
    const account = await this.#ctx.store.getStorageAccount(subscriptionId, resourceGroup, name);
    if (!account) {
      throw new WirewatchError(
        'ResourceNotFound',
        `Storage account '${name}' was not found in resource group '${resourceGroup}'`,
        { target: 'accountName' },
      );
    }
    return account;
  }

  /** The subscription's accounts, or one resource group's (case-insensitive). */
  async list(subscriptionId: string, resourceGroup?: string): Promise<StorageAccountRecord[]> {
    const accounts = await this.#ctx.store.listStorageAccounts(subscriptionId);
    if (resourceGroup === undefined) return accounts;
    const group = resourceGroup.toLowerCase();
    return accounts.filter((a) => a.resourceGroup.toLowerCase() === group);
  }

  /** Deletes the account, audited; false when there was none. */
  async delete(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
    caller: Caller,
  ): Promise<boolean> {
    const { store } = this.#ctx;
    const existing = await store.getStorageAccount(subscriptionId, resourceGroup, name);
    if (!existing) return false;
    await store.deleteStorageAccount(subscriptionId, resourceGroup, name);
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'storageAccount.delete',
      resourceId: storageAccountResourceId(subscriptionId, existing.resourceGroup, existing.name),
      detail: { accountName: existing.accountName, blobEndpoint: existing.blobEndpoint },
    });
    return true;
  }
}

/**
 * The one lookup of a capture's storage account: the registered account a storage account id
 * names, in the capture's own subscription only (another subscription's account reads exactly
 * like one that does not exist); undefined when there is none.
 */
export async function findStorageAccount(
  ctx: ControlContext,
  subscriptionId: string,
  ref: StorageAccountRef | undefined,
): Promise<StorageAccountRecord | undefined> {
  if (!ref || ref.subscriptionId.toLowerCase() !== subscriptionId.toLowerCase()) return undefined;
  return ctx.store.getStorageAccount(subscriptionId, ref.resourceGroup, ref.name);
}

/** The registered storage account a session's storageId names, if any. */
export function captureStorageAccount(
  ctx: ControlContext,
  session: SessionRecord,
): Promise<StorageAccountRecord | undefined> {
  return findStorageAccount(ctx, session.subscriptionId, session.capture.storage.account);
}
