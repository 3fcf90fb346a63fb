/**
 * The store's tables as the latest migration leaves them (Kysely's view of the database), shared
 * by every SQL backend: portable types only, times as ISO-8601 text (which sorts in time order),
 * booleans as 0/1, JSON as text.
 *
 * Names that Azure compares case-insensitively (resource groups, watchers, captures, VMs) are
 * stored twice: as given, for display, and folded by {@link foldName} in a `*_key` column that
 * the unique keys, lookups and orderings use. Folding in code rather than with SQL `lower()`
 * gives every backend the same (Unicode) folding and keeps the indexes plain column indexes.
 */
import type { SessionStopReason } from '../../model/stop-reason.js';
import type { OperationKind, OperationStatus, Role, SessionStatus } from '../store.js';

/** The case-folded form of a name, as stored in the `*_key` columns. */
export function foldName(name: string): string {
  return name.toLowerCase();
}

export interface SubscriptionsTable {
  id: string;
  display_name: string;
  created_at: string;
}

export interface TokensTable {
  id: string;
  subscription_id: string | null;
  role: Role | 'Admin';
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

export interface EnrollmentTokensTable {
  id: string;
  subscription_id: string;
  hash: string;
  created_at: string;
  expires_at: string;
  revoked_at: string | null;
  /** A takeover token's VM, as given (added by 0003); null for an ordinary token. */
  takeover_resource_group: string | null;
  takeover_name: string | null;
  /** When a takeover token was used (it is single-use; added by 0003). */
  used_at: string | null;
  /** How many VMs the token may enroll; null (tokens from before 0004) is no limit. */
  max_uses: number | null;
  /** How many VMs it has enrolled (added by 0004). */
  uses: number;
}

export interface VmsTable {
  id: string;
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  location: string;
  hostname: string;
  capture_root: string;
  credential_hash: string;
  created_at: string;
  last_seen_at: string | null;
  /** The scale set of an instance, as given, and folded (added by 0006); null for a plain VM. */
  scale_set: string | null;
  scale_set_key: string | null;
  /** An instance's id, canonical decimal text (added by 0006); null for a plain VM. */
  instance_id: string | null;
}

export interface NetworkWatchersTable {
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  location: string;
  /** JSON object of strings. */
  tags: string;
  etag: string;
  created_at: string;
}

export interface SessionsTable {
  id: string;
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  watcher_name: string;
  watcher_key: string;
  name: string;
  name_key: string;
  location: string;
  vm_id: string;
  /** JSON object. */
  properties: string;
  status: SessionStatus;
  stop_reason: SessionStopReason | null;
  /** JSON array of { code, message }. */
  errors: string;
  capture_start_time: string | null;
  stop_time: string | null;
  /** JSON { packets, bytes, kernelDrops, at } with `at` as ISO text, or null. */
  progress: string | null;
  /** JSON array of strings. */
  files: string;
  stop_requested: SessionStopReason | null;
  /** 0 or 1. */
  delete_requested: number;
  etag: string;
  created_at: string;
  updated_at: string;
  /** JSON { state, blobs, error } or null (added by 0002). */
  upload: string | null;
  /** A scale-set capture's child: its parent's id and its instance (added by 0007); else null. */
  parent_id: string | null;
  instance_id: string | null;
}

export interface OperationsTable {
  id: string;
  subscription_id: string;
  location: string;
  kind: OperationKind;
  session_id: string;
  resource_id: string;
  status: OperationStatus;
  /** JSON { code, message }, or null. */
  error: string | null;
  created_at: string;
  updated_at: string;
}

export interface StorageAccountsTable {
  subscription_id: string;
  resource_group: string;
  resource_group_key: string;
  name: string;
  name_key: string;
  account_name: string;
  blob_endpoint: string;
  /** A secret (it holds the account key); never leaves the server. */
  connection_string: string;
  created_at: string;
}

export interface AuditTable {
  id: string;
  subscription_id: string;
  at: string;
  actor: string;
  action: string;
  resource_id: string;
  source_ip: string;
  /** JSON object. */
  detail: string;
}

/** The ring file numbers the server granted a SAS for, per session (added by 0004). */
export interface RingGrantsTable {
  session_id: string;
  file_index: number;
}

export interface StoreDatabase {
  subscriptions: SubscriptionsTable;
  tokens: TokensTable;
  enrollment_tokens: EnrollmentTokensTable;
  vms: VmsTable;
  network_watchers: NetworkWatchersTable;
  sessions: SessionsTable;
  operations: OperationsTable;
  audit: AuditTable;
  storage_accounts: StorageAccountsTable;
  ring_grants: RingGrantsTable;
}
