/**
 * Row ↔ record mappers for the tables of ./migrations/schema.ts, shared by every SQL backend: they
 * use the schema's portable types only. Times are ISO-8601 text, booleans 0/1, JSON columns text.
 */
import { readCaptureProperties, resolveCapture } from '../../model/capture-settings.js';
import { foldName } from '../migrations/schema.js';
import type {
  AuditTable,
  EnrollmentTokensTable,
  NetworkWatchersTable,
  OperationsTable,
  SessionsTable,
  StorageAccountsTable,
  SubscriptionsTable,
  TokensTable,
  VmsTable,
} from '../migrations/schema.js';
import { isSealed, type SecretBox } from '../secret-box.js';
import type {
  AuditRecord,
  EnrollmentTokenRecord,
  NetworkWatcherRecord,
  OperationRecord,
  SessionError,
  SessionPatch,
  SessionProgress,
  SessionRecord,
  SessionUpload,
  StorageAccountRecord,
  SubscriptionRecord,
  TokenRecord,
  VmRecord,
} from '../store.js';

export const iso = (date: Date): string => date.toISOString();
export const isoOrNull = (date: Date | null): string | null => (date === null ? null : iso(date));
const dateOrNull = (text: string | null): Date | null => (text === null ? null : new Date(text));

/** The column was written by this module from a value of type T. */
function parseJson<T>(text: string): T {
  return JSON.parse(text) as T;
}

export function subscriptionToRow(record: SubscriptionRecord): SubscriptionsTable {
  return {
    id: record.id,
    display_name: record.displayName,
    created_at: iso(record.createdAt),
  };
}

export function toSubscription(row: SubscriptionsTable): SubscriptionRecord {
  return { id: row.id, displayName: row.display_name, createdAt: new Date(row.created_at) };
}

export function tokenToRow(record: TokenRecord): TokensTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    role: record.role,
    hash: record.hash,
    created_at: iso(record.createdAt),
    revoked_at: isoOrNull(record.revokedAt),
  };
}

export function toToken(row: TokensTable): TokenRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    role: row.role,
    hash: row.hash,
    createdAt: new Date(row.created_at),
    revokedAt: dateOrNull(row.revoked_at),
  };
}

export function enrollmentTokenToRow(record: EnrollmentTokenRecord): EnrollmentTokensTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    hash: record.hash,
    created_at: iso(record.createdAt),
    expires_at: iso(record.expiresAt),
    revoked_at: isoOrNull(record.revokedAt),
    takeover_resource_group: record.takeover?.resourceGroup ?? null,
    takeover_name: record.takeover?.name ?? null,
    used_at: isoOrNull(record.usedAt),
    max_uses: record.maxUses,
    uses: record.uses,
  };
}

export function toEnrollmentToken(row: EnrollmentTokensTable): EnrollmentTokenRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    hash: row.hash,
    createdAt: new Date(row.created_at),
    expiresAt: new Date(row.expires_at),
    revokedAt: dateOrNull(row.revoked_at),
    takeover:
      row.takeover_resource_group === null || row.takeover_name === null
        ? null
        : { resourceGroup: row.takeover_resource_group, name: row.takeover_name },
    usedAt: dateOrNull(row.used_at),
    maxUses: row.max_uses,
    uses: row.uses,
  };
}

export function vmToRow(record: VmRecord): VmsTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    hostname: record.hostname,
    capture_root: record.captureRoot,
    credential_hash: record.credentialHash,
    created_at: iso(record.createdAt),
    last_seen_at: isoOrNull(record.lastSeenAt),
    scale_set: record.scaleSet,
    scale_set_key: record.scaleSet === null ? null : foldName(record.scaleSet),
    instance_id: record.instanceId,
  };
}

export function toVm(row: VmsTable): VmRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    location: row.location,
    hostname: row.hostname,
    captureRoot: row.capture_root,
    credentialHash: row.credential_hash,
    createdAt: new Date(row.created_at),
    lastSeenAt: dateOrNull(row.last_seen_at),
    scaleSet: row.scale_set,
    instanceId: row.instance_id,
  };
}

export function watcherToRow(record: NetworkWatcherRecord): NetworkWatchersTable {
  return {
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    tags: JSON.stringify(record.tags),
    etag: record.etag,
    created_at: iso(record.createdAt),
  };
}

export function toWatcher(row: NetworkWatchersTable): NetworkWatcherRecord {
  return {
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    location: row.location,
    tags: parseJson<Record<string, string>>(row.tags),
    etag: row.etag,
    createdAt: new Date(row.created_at),
  };
}

/** SessionProgress as stored: its time as ISO text. */
type StoredProgress = Omit<SessionProgress, 'at'> & { readonly at: string };

function progressToText(progress: SessionProgress | null): string | null {
  if (progress === null) return null;
  const stored: StoredProgress = { ...progress, at: iso(progress.at) };
  return JSON.stringify(stored);
}

function toProgress(text: string | null): SessionProgress | null {
  if (text === null) return null;
  const stored = parseJson<StoredProgress>(text);
  return { ...stored, at: new Date(stored.at) };
}

export function sessionToRow(record: SessionRecord): SessionsTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    resource_group: record.resourceGroup,
    resource_group_key: foldName(record.resourceGroup),
    watcher_name: record.watcherName,
    watcher_key: foldName(record.watcherName),
    name: record.name,
    name_key: foldName(record.name),
    location: record.location,
    vm_id: record.vmId,
    properties: JSON.stringify(record.properties),
    status: record.status,
    stop_reason: record.stopReason,
    errors: JSON.stringify(record.errors),
    capture_start_time: isoOrNull(record.captureStartTime),
    stop_time: isoOrNull(record.stopTime),
    progress: progressToText(record.progress),
    files: JSON.stringify(record.files),
    stop_requested: record.stopRequested,
    delete_requested: record.deleteRequested ? 1 : 0,
    etag: record.etag,
    created_at: iso(record.createdAt),
    updated_at: iso(record.updatedAt),
    upload: record.upload === null ? null : JSON.stringify(record.upload),
    parent_id: record.parentId,
    instance_id: record.instanceId,
  };
}

/** The columns a patch changes; a field absent or undefined in the patch is left alone. */
export function sessionPatchToRow(patch: SessionPatch): Partial<SessionsTable> {
  const row: Partial<SessionsTable> = {};
  if (patch.status !== undefined) row.status = patch.status;
  if (patch.stopReason !== undefined) row.stop_reason = patch.stopReason;
  if (patch.errors !== undefined) row.errors = JSON.stringify(patch.errors);
  if (patch.captureStartTime !== undefined) {
    row.capture_start_time = isoOrNull(patch.captureStartTime);
  }
  if (patch.stopTime !== undefined) row.stop_time = isoOrNull(patch.stopTime);
  if (patch.progress !== undefined) row.progress = progressToText(patch.progress);
  if (patch.files !== undefined) row.files = JSON.stringify(patch.files);
  if (patch.stopRequested !== undefined) row.stop_requested = patch.stopRequested;
  if (patch.deleteRequested !== undefined) row.delete_requested = patch.deleteRequested ? 1 : 0;
  if (patch.upload !== undefined) {
    row.upload = patch.upload === null ? null : JSON.stringify(patch.upload);
  }
  return row;
}

export function toSession(row: SessionsTable): SessionRecord {
  const properties = readCaptureProperties(JSON.parse(row.properties), `session ${row.id}`);
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    watcherName: row.watcher_name,
    name: row.name,
    location: row.location,
    vmId: row.vm_id,
    parentId: row.parent_id,
    instanceId: row.instance_id,
    properties,
    capture: resolveCapture(properties),
    status: row.status,
    stopReason: row.stop_reason,
    errors: parseJson<SessionError[]>(row.errors),
    captureStartTime: dateOrNull(row.capture_start_time),
    stopTime: dateOrNull(row.stop_time),
    progress: toProgress(row.progress),
    files: parseJson<string[]>(row.files),
    stopRequested: row.stop_requested,
    deleteRequested: row.delete_requested !== 0,
    upload: row.upload === null ? null : parseJson<SessionUpload>(row.upload),
    etag: row.etag,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/**
 * The lookup of a row keyed by name (VMs, network watchers, storage accounts): its subscription
 * and its case-folded resource group and name.
 */
export function byName(subscriptionId: string, resourceGroupKey: string, nameKey: string) {
  return {
    subscription_id: subscriptionId,
    resource_group_key: resourceGroupKey,
    name_key: nameKey,
  };
}

/**
 * What a storage account's sealed connection string is bound to: its row, so that a sealed
 * value copied into another row does not open.
 */
export function storageAccountContext(
  row: Pick<StorageAccountsTable, 'subscription_id' | 'resource_group_key' | 'name_key'>,
): string {
  return `storageAccount/${row.subscription_id}/${row.resource_group_key}/${row.name_key}`;
}

/** The row, its connection string sealed with the box's current key. */
export function storageAccountToRow(
  record: StorageAccountRecord,
  box: SecretBox,
): StorageAccountsTable {
  const keys = {
    subscription_id: record.subscriptionId,
    resource_group_key: foldName(record.resourceGroup),
    name_key: foldName(record.name),
  };
  return {
    ...keys,
    resource_group: record.resourceGroup,
    name: record.name,
    account_name: record.accountName,
    blob_endpoint: record.blobEndpoint,
    connection_string: box.seal(record.connectionString, storageAccountContext(keys)),
    created_at: iso(record.createdAt),
  };
}

/**
 * The record, its connection string opened. A plaintext value (a row from before sealing, until
 * resealSecrets runs at the server's start) is returned as it is.
 */
export function toStorageAccount(row: StorageAccountsTable, box: SecretBox): StorageAccountRecord {
  return {
    subscriptionId: row.subscription_id,
    resourceGroup: row.resource_group,
    name: row.name,
    accountName: row.account_name,
    blobEndpoint: row.blob_endpoint,
    connectionString: isSealed(row.connection_string)
      ? box.open(row.connection_string, storageAccountContext(row))
      : row.connection_string,
    createdAt: new Date(row.created_at),
  };
}

export function operationToRow(record: OperationRecord): OperationsTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    location: record.location,
    kind: record.kind,
    session_id: record.sessionId,
    resource_id: record.resourceId,
    status: record.status,
    error: record.error === null ? null : JSON.stringify(record.error),
    created_at: iso(record.createdAt),
    updated_at: iso(record.updatedAt),
  };
}

export function toOperation(row: OperationsTable): OperationRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    location: row.location,
    kind: row.kind,
    sessionId: row.session_id,
    resourceId: row.resource_id,
    status: row.status,
    error: row.error === null ? null : parseJson<SessionError>(row.error),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

export function auditToRow(record: AuditRecord): AuditTable {
  return {
    id: record.id,
    subscription_id: record.subscriptionId,
    at: iso(record.at),
    actor: record.actor,
    action: record.action,
    resource_id: record.resourceId,
    source_ip: record.sourceIp,
    detail: JSON.stringify(record.detail),
  };
}

export function toAudit(row: AuditTable): AuditRecord {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    at: new Date(row.at),
    actor: row.actor,
    action: row.action,
    resourceId: row.resource_id,
    sourceIp: row.source_ip,
    detail: parseJson<Record<string, unknown>>(row.detail),
  };
}
