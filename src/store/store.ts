/**
 * The control plane's storage, as one domain interface. It leaks no connection, transaction or
 * SQL type: the SQLite implementation (src/store/sqlite/) and the PostgreSQL one (later, in
 * src/store/postgres/) both implement it, and one conformance suite
 * (test/support/store-conformance/) runs against each.
 *
 * Conventions: ids are uuids made by the caller; times are `Date`; names are compared
 * case-insensitively where Azure does (resource groups, watchers, captures, VMs), so records keep
 * the casing they were created with and lookups fold case. Every method is atomic.
 */
import type { CaptureProperties, ResolvedCapture } from '../model/capture-settings.js';
import type { SessionStopReason } from '../model/stop-reason.js';

export type Role = 'Reader' | 'Contributor' | 'Owner';

export interface SubscriptionRecord {
  readonly id: string;
  readonly displayName: string;
  readonly createdAt: Date;
}

/** An API token. `subscriptionId` null with role 'Admin' is an admin token (sees everything). */
export interface TokenRecord {
  readonly id: string;
  readonly subscriptionId: string | null;
  readonly role: Role | 'Admin';
  /** sha256 of the token text, hex. The text itself is never stored. */
  readonly hash: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export interface EnrollmentTokenRecord {
  readonly id: string;
  readonly subscriptionId: string;
  readonly hash: string;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly revokedAt: Date | null;
  /**
   * A takeover token: the one VM (names as given) it may enroll, replacing that VM's credential
   * if it is enrolled already. Single-use. Null for an ordinary token, which never replaces one.
   */
  readonly takeover: { readonly resourceGroup: string; readonly name: string } | null;
  /** When a takeover token was used; always null for an ordinary token. */
  readonly usedAt: Date | null;
  /** How many VMs it may enroll; null is no limit (tokens made before limits existed). */
  readonly maxUses: number | null;
  /** How many VMs it has enrolled. */
  readonly uses: number;
}

/** What bounds the enrollment of a new VM (createVm). */
export interface VmEnrollmentLimits {
  /** The enrollment token used: the VM is one of its uses, refused once it has none left. */
  readonly enrollmentTokenId?: string;
  /** The most VMs the subscription may have. */
  readonly maxVmsPerSubscription?: number;
}

/** What bounds the ring file numbers granted a SAS for one session (grantRingFile). */
export interface RingGrantBounds {
  /** A new number may be at most the highest granted (0 before any) plus this. */
  readonly window: number;
  /** The most numbers one session may be granted. */
  readonly maxGrants: number;
}

export type RingGrantResult =
  | { readonly kind: 'granted'; readonly again: boolean }
  | { readonly kind: 'refused'; readonly highest: number; readonly count: number };

/** A host running the agent, seen by the API as a VM. */
export interface VmRecord {
  /** The agent's id; also Azure's `vmId`. */
  readonly id: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  readonly location: string;
  readonly hostname: string;
  readonly captureRoot: string;
  /** sha256 of the agent's credential, hex. */
  readonly credentialHash: string;
  readonly createdAt: Date;
  readonly lastSeenAt: Date | null;
  /**
   * The scale set this host is an instance of (as given), or null for a plain VM. An instance's
   * `name` is `{scaleSet}_{instanceId}` (src/model/scale-set.ts).
   */
  readonly scaleSet: string | null;
  /** The instance id within the scale set ("0", "1", …); null for a plain VM. */
  readonly instanceId: string | null;
}

export interface NetworkWatcherRecord {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  readonly location: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly etag: string;
  readonly createdAt: Date;
}

/** Status as stored. `Unknown` is never stored: it is derived when the agent is unreachable. */
export type SessionStatus = 'NotStarted' | 'Running' | 'Stopped' | 'Error';

export interface SessionError {
  readonly code: string;
  readonly message: string;
}

export interface SessionProgress {
  readonly packets: number;
  readonly bytes: number;
  readonly kernelDrops: number;
  readonly at: Date;
}

/** A blob upload's state, as the agent last reported it. */
export interface SessionUpload {
  readonly state: 'Pending' | 'Completed' | 'Failed';
  /** Committed blobs (URL without SAS) and their lengths. */
  readonly blobs: readonly { readonly url: string; readonly size: number }[];
  readonly error: SessionError | null;
}

/** A storage account registered with the server (Azure's Microsoft.Storage/storageAccounts). */
export interface StorageAccountRecord {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  /** The account name inside the connection string (e.g. devstoreaccount1). */
  readonly accountName: string;
  /** The blob service endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1. */
  readonly blobEndpoint: string;
  /**
   * The full connection string, key included: a secret that never leaves the server. Stored
   * sealed (AES-256-GCM, src/store/secret-box.ts) with a key kept outside the database.
   */
  readonly connectionString: string;
  readonly createdAt: Date;
}

/** A packet capture session: the ARM resource plus its lifecycle. */
export interface SessionRecord {
  readonly id: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly watcherName: string;
  readonly name: string;
  /** The network watcher's location; the quota is counted per (subscription, location). */
  readonly location: string;
  /**
   * The target VM's id (VmRecord.id). A scale-set capture's parent has the scale set's key
   * (`scaleSetKey`, src/model/scale-set.ts): never a VM's (a uuid), so nothing reaches an agent
   * for it, and `listSessionsByVm(key)` finds the set's captures.
   */
  readonly vmId: string;
  /**
   * A scale-set capture's child (one per instance, named `{parentName}/{instanceId}`, which no
   * ARM name can be): its parent's id; else null. Never listed, never counted by the quota.
   */
  readonly parentId: string | null;
  /** A child's instance id ("0", "1", …); null for every other session. */
  readonly instanceId: string | null;
  /**
   * The resource's `properties` as the API returns them (defaults filled in), JSON-serialisable.
   * Also what a re-PUT is compared with. The one thing stored of the capture's settings.
   */
  readonly properties: CaptureProperties;
  /**
   * The capture as it runs, `resolveCapture(properties)` (src/model/capture-settings.ts): what
   * everything after create reads. Derived, not stored apart: a store derives it from the stored
   * properties as it reads the row, so it cannot disagree with them.
   */
  readonly capture: ResolvedCapture;
  readonly status: SessionStatus;
  readonly stopReason: SessionStopReason | null;
  readonly errors: readonly SessionError[];
  /** Set once when the agent reports the capture running. */
  readonly captureStartTime: Date | null;
  readonly stopTime: Date | null;
  readonly progress: SessionProgress | null;
  /** The capture files at the end, as the agent reported them. */
  readonly files: readonly string[];
  /** A stop was asked for (API stop, delete, VM deletion) and not yet confirmed by the agent. */
  readonly stopRequested: SessionStopReason | null;
  /** The resource is to be removed once the capture has stopped. */
  readonly deleteRequested: boolean;
  /** Sessions stored in a storage account: the upload's state; null otherwise. */
  readonly upload: SessionUpload | null;
  readonly etag: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** Fields a session update may change. `etag` and `updatedAt` are always renewed. */
export type SessionPatch = Partial<
  Pick<
    SessionRecord,
    | 'status'
    | 'stopReason'
    | 'errors'
    | 'captureStartTime'
    | 'stopTime'
    | 'progress'
    | 'files'
    | 'stopRequested'
    | 'deleteRequested'
    | 'upload'
  >
>;

export type OperationKind = 'create' | 'stop' | 'delete';
export type OperationStatus = 'InProgress' | 'Succeeded' | 'Failed';

/** An ARM long-running operation, polled through Azure-AsyncOperation or Location. */
export interface OperationRecord {
  readonly id: string;
  readonly subscriptionId: string;
  readonly location: string;
  readonly kind: OperationKind;
  readonly sessionId: string;
  /** The ARM id of the resource the operation acts on. */
  readonly resourceId: string;
  readonly status: OperationStatus;
  readonly error: SessionError | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface AuditRecord {
  readonly id: string;
  readonly subscriptionId: string;
  readonly at: Date;
  /** Who: `admin`, `token:<id>` or `agent:<id>`. */
  readonly actor: string;
  /** What: `packetCapture.create`, `packetCapture.stop`, `packetCapture.delete`, `token.create`, … */
  readonly action: string;
  readonly resourceId: string;
  /** From where: the client's address. */
  readonly sourceIp: string;
  /** Outcome and details, JSON-serialisable; never a secret. */
  readonly detail: Readonly<Record<string, unknown>>;
}

/** A page of a list, in a stable order; `next` is an opaque cursor for the following page. */
/**
 * What an upsert answers: the stored record and whether it was new. Every upsert of the store
 * (network watchers, storage accounts) matches on (subscription, resource group, name), folding
 * case; an update keeps the record's name casing and createdAt and takes everything else.
 */
export interface Upserted<R> {
  readonly record: R;
  readonly created: boolean;
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly next: string | null;
}

export interface PageRequest {
  readonly limit: number;
  /** The cursor from the previous page's `next`. */
  readonly after?: string | null;
}

export type CreateSessionResult =
  | { readonly kind: 'created'; readonly session: SessionRecord }
  | { readonly kind: 'exists'; readonly session: SessionRecord }
  | { readonly kind: 'quota-exceeded'; readonly active: number };

/** Subscriptions (tenants). */
export interface SubscriptionStore {
  createSubscription(record: SubscriptionRecord): Promise<void>;
  getSubscription(id: string): Promise<SubscriptionRecord | undefined>;
  listSubscriptions(): Promise<SubscriptionRecord[]>;
}

/** API tokens. */
export interface TokenStore {
  createToken(record: TokenRecord): Promise<void>;
  /** The token with this hash, revoked or not. */
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  /** Marks the token revoked; false when there is no such token in that subscription. */
  revokeToken(subscriptionId: string | null, id: string, at: Date): Promise<boolean>;
  /**
   * Revokes every admin token (role 'Admin') whose hash is not `keepHash` and that is not
   * revoked yet; returns how many. The server runs it at start, so that only the current admin
   * token works after a rotation.
   */
  revokeAdminTokensExcept(keepHash: string, at: Date): Promise<number>;
}

/** Enrollment tokens, with which agents enroll their VMs. */
export interface EnrollmentTokenStore {
  createEnrollmentToken(record: EnrollmentTokenRecord): Promise<void>;
  findEnrollmentTokenByHash(hash: string): Promise<EnrollmentTokenRecord | undefined>;
  /** A subscription's enrollment tokens (expired, revoked and used ones too), oldest first. */
  listEnrollmentTokens(subscriptionId: string): Promise<EnrollmentTokenRecord[]>;
  /** Marks it revoked; false when there is no such token in the subscription. Keeps a first time. */
  revokeEnrollmentToken(subscriptionId: string, id: string, at: Date): Promise<boolean>;
  /**
   * Marks a token used, atomically: true for the one call that found it neither used nor
   * revoked, false for every other (the single use of a takeover token).
   */
  useEnrollmentToken(id: string, at: Date): Promise<boolean>;
}

/** VMs: the hosts running the agent. */
export interface VmStore {
  /**
   * Registers a VM, or replaces the credential, hostname and capture root of the VM with the
   * same (subscription, resource group, name) — re-enrollment keeps its id. Returns the record.
   */
  upsertVm(record: VmRecord): Promise<VmRecord>;
  /**
   * Registers a new VM; undefined (nothing written) when one with the same (subscription,
   * resource group, name) exists. Atomic: of concurrent enrollments of one name, one wins.
   * With limits, it also counts one use of the enrollment token, and throws
   * WirewatchError('EnrollmentLimitReached'), writing nothing, when the token has no use left
   * or the subscription has maxVmsPerSubscription VMs (scale-set instances count as VMs);
   * concurrent enrollments never exceed either. An instance (scaleSet set) whose scale set has
   * an instance in another location is refused with WirewatchError('InvalidLocation'), writing
   * nothing: a scale set has one location, whoever enrolled first chose it.
   */
  createVm(record: VmRecord, limits?: VmEnrollmentLimits): Promise<VmRecord | undefined>;
  getVmById(id: string): Promise<VmRecord | undefined>;
  getVmByCredentialHash(hash: string): Promise<VmRecord | undefined>;
  getVm(subscriptionId: string, resourceGroup: string, name: string): Promise<VmRecord | undefined>;
  /** VMs of a subscription, optionally of one resource group, ordered by resource group and name. */
  listVms(subscriptionId: string, resourceGroup?: string): Promise<VmRecord[]>;
  /**
   * The instances of one scale set (its name compared case-insensitively), ordered by instance id
   * as a number; empty when the scale set has none.
   */
  listScaleSetInstances(
    subscriptionId: string,
    resourceGroup: string,
    scaleSet: string,
  ): Promise<VmRecord[]>;
  touchVm(id: string, lastSeenAt: Date): Promise<void>;
  deleteVm(id: string): Promise<boolean>;
}

/** Network watchers. */
export interface NetworkWatcherStore {
  /** Creates or updates (location, tags and etag): an {@link Upserted} record. */
  putWatcher(record: NetworkWatcherRecord): Promise<Upserted<NetworkWatcherRecord>>;
  /**
   * Creates the watcher only if neither a watcher of that name nor one in that location exists
   * in the subscription; never changes an existing one. Returns the new record, or undefined
   * when nothing was created. Atomic: of concurrent calls at most one creates.
   */
  createWatcherIfAbsent(record: NetworkWatcherRecord): Promise<NetworkWatcherRecord | undefined>;
  getWatcher(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<NetworkWatcherRecord | undefined>;
  /** The subscription's watcher in a location (at most one exists). */
  findWatcherByLocation(
    subscriptionId: string,
    location: string,
  ): Promise<NetworkWatcherRecord | undefined>;
  listWatchers(subscriptionId: string, resourceGroup?: string): Promise<NetworkWatcherRecord[]>;
  /** Deletes the watcher and every session under it. */
  deleteWatcher(subscriptionId: string, resourceGroup: string, name: string): Promise<boolean>;
}

/** Packet capture sessions and their ring file grants. */
export interface SessionStore {
  /**
   * Inserts the session unless one with the same (subscription, resource group, watcher, name)
   * exists ('exists', with that session) or the (subscription, location) already has `quota`
   * sessions NotStarted or Running ('quota-exceeded'). Atomic: concurrent creates never exceed
   * the quota. Children of scale-set captures (parentId set) are neither counted nor checked:
   * their parent counted once.
   */
  createSession(record: SessionRecord, quota: number): Promise<CreateSessionResult>;
  getSession(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
    name: string,
  ): Promise<SessionRecord | undefined>;
  getSessionById(id: string): Promise<SessionRecord | undefined>;
  /** Sessions under a watcher, ordered by name (case-folded); never children (parentId set). */
  listSessions(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
    page: PageRequest,
  ): Promise<Page<SessionRecord>>;
  /** The children of a scale-set capture, by instance id as a number. */
  listChildSessions(parentId: string): Promise<SessionRecord[]>;
  /** Sessions of one VM in any of these statuses (all statuses when omitted). */
  listSessionsByVm(vmId: string, statuses?: readonly SessionStatus[]): Promise<SessionRecord[]>;
  /** Sessions in any of these statuses, across all tenants (the server's deadline backstop). */
  listSessionsByStatus(statuses: readonly SessionStatus[]): Promise<SessionRecord[]>;
  /** Applies the patch; returns the updated record, undefined when the session is gone. */
  updateSession(id: string, patch: SessionPatch): Promise<SessionRecord | undefined>;
  /** Deletes the session and its ring grants; a parent's children (and theirs) with it. */
  deleteSession(id: string): Promise<boolean>;

  /**
   * Records that ring file `fileIndex` of the session is granted a SAS. A number granted before
   * is granted again; a new one only while the session has fewer than `maxGrants` and the
   * number is at most the highest granted (0 before any) plus `window`. Atomic.
   */
  grantRingFile(
    sessionId: string,
    fileIndex: number,
    bounds: RingGrantBounds,
  ): Promise<RingGrantResult>;
  /** The ring file numbers granted to the session, ascending. */
  listRingGrants(sessionId: string): Promise<number[]>;
  /** Count of sessions per status, across all tenants (for /metrics); children not counted. */
  countSessionsByStatus(): Promise<Record<SessionStatus, number>>;
}

/** Storage accounts and the secrets they hold. */
export interface StorageAccountStore {
  /** Creates or updates (account name, blob endpoint, connection string): an {@link Upserted} record. */
  putStorageAccount(record: StorageAccountRecord): Promise<Upserted<StorageAccountRecord>>;
  getStorageAccount(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<StorageAccountRecord | undefined>;
  /** Ordered by resource group and name. */
  listStorageAccounts(subscriptionId: string): Promise<StorageAccountRecord[]>;
  deleteStorageAccount(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<boolean>;

  /**
   * Seals every stored secret that is not sealed with the current secrets key (plaintext rows
   * from before sealing, rows sealed with the previous key during a rotation) and returns how
   * many it re-sealed. All or nothing: it throws SecretsKeyError, writing nothing, when a secret
   * does not open with the store's keys (a wrong key). The server runs it at every start.
   */
  resealSecrets(): Promise<number>;
}

/** ARM long-running operations. */
export interface OperationStore {
  createOperation(record: OperationRecord): Promise<void>;
  getOperation(subscriptionId: string, id: string): Promise<OperationRecord | undefined>;
  /** Operations of a session still InProgress. */
  listOpenOperations(sessionId: string): Promise<OperationRecord[]>;
  /**
   * Every operation still InProgress, oldest first: the control plane reads them once at start
   * to hold them to their deadlines (it tracks the ones it opens itself in memory).
   */
  listInProgressOperations(): Promise<OperationRecord[]>;
  updateOperation(
    id: string,
    patch: { status: OperationStatus; error?: SessionError | null },
  ): Promise<void>;
}

/** The audit log. */
export interface AuditStore {
  appendAudit(record: AuditRecord): Promise<void>;
  /** Newest first. */
  listAudit(subscriptionId: string, page: PageRequest): Promise<Page<AuditRecord>>;
}

/**
 * The whole store: one interface per concern, so that each backend can implement them in
 * files of its own (src/store/sqlite/*-store.ts).
 */
export interface Store
  extends
    SubscriptionStore,
    TokenStore,
    EnrollmentTokenStore,
    VmStore,
    NetworkWatcherStore,
    SessionStore,
    StorageAccountStore,
    OperationStore,
    AuditStore {
  /** Closes the connection(s); safe to call twice. */
  close(): Promise<void>;
}
