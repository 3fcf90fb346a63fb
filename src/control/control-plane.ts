import type { PacketCaptureInput } from '../model/arm.js';
import type { AgentMessage, EnrollRequest, ObservedSession } from '../model/channel.js';
import type {
  AuditRecord,
  EnrollmentTokenRecord,
  NetworkWatcherRecord,
  OperationKind,
  OperationRecord,
  Page,
  PageRequest,
  SessionRecord,
  SessionStatus,
  StorageAccountRecord,
  Store,
  Upserted,
  VmRecord,
} from '../store/store.js';
import { AgentReconciler } from './agent-reconciliation.js';
import { ApiTokens } from './api-tokens.js';
import { appendAudit, type AuditEntry } from './audit.js';
import { BlobGrants } from './blob-grants.js';
import { Captures } from './captures.js';
import type {
  AgentLink,
  BlobWriter,
  Caller,
  CaptureRef,
  ControlContext,
  ControlLog,
} from './control-context.js';
import { DeadlineBackstop } from './deadlines.js';
import { Enrollment, type Enrolled } from './enrollment.js';
import { EnrollmentTokens } from './enrollment-tokens.js';
import { Hosts } from './hosts.js';
import { LiveProgress } from './live-progress.js';
import { CaptureOperations } from './operations.js';
import { watcherResourceId } from './resource-ids.js';
import { ScaleSetCaptures, type InstanceSession } from './scale-set-captures.js';
import type { SessionMemory } from './session-end.js';
import {
  captureStorageAccount,
  StorageAccounts,
  type StorageAccountProbe,
} from './storage-accounts.js';
import { Subscriptions } from './subscriptions.js';
import { UploadChecks } from './upload-checks.js';
import { NetworkWatchers, type WatcherPut } from './watchers.js';

export type { AgentLink, BlobWriter, Caller, CaptureRef } from './control-context.js';
export { isActive } from './session-end.js';
export { isScaleSetParent } from './scale-set-status.js';
export { assignmentOf } from './assignment.js';
export { invalidEnrollmentToken, type Enrolled } from './enrollment.js';
export type { WatcherPut } from './watchers.js';
export type { AuditEntry } from './audit.js';
export type { StorageAccountProbe, StorageAccountPut } from './storage-accounts.js';
export type { ScaleSet } from './hosts.js';
export type { InstanceSession } from './scale-set-captures.js';

export interface ControlPlaneOptions {
  readonly store: Store;
  readonly agents: AgentLink;
  /** Opens a storage account for minting SAS tokens (the server wires @azure/storage-blob). */
  readonly openStorageAccount?: (record: StorageAccountRecord) => BlobWriter;
  /** Checks a connection string before it is registered (the server wires @azure/storage-blob). */
  readonly probeStorageAccount?: StorageAccountProbe;
  /** How long past a session's deadline its SAS stays valid for uploads; default 1 h. */
  readonly uploadGraceMs?: number;
  /** Sessions NotStarted or Running per (subscription, location); default 10,000. */
  readonly quota?: number;
  readonly now?: () => Date;
  /** How long past its deadline a running capture may go before the server stops it. */
  readonly deadlineGraceMs?: number;
  /** How often live progress is written to the store (it is always served from memory). */
  readonly progressPersistMs?: number;
  /**
   * How long an agent has to acknowledge a create, stop or delete (default 60 s); after it,
   * {@link ControlPlane.sweepOperations} fails the start or forces the stop.
   */
  readonly operationTimeoutMs?: number;
  /**
   * How long a Completed upload that storage could not confirm (it errored) waits before it is
   * checked again: minMs after the first failure, doubling with each, at most maxMs. Default
   * 10 s and 10 min.
   */
  readonly uploadCheckBackoff?: { readonly minMs: number; readonly maxMs: number };
  readonly log?: ControlLog;
}

export const DEFAULT_QUOTA = 10_000;

/**
 * The control plane's domain logic, a front over one module per concern: captures
 * (`captures.ts`), agent reconciliation (`agent-reconciliation.ts`), long-running operations
 * (`operations.ts`), deadlines (`deadlines.ts`), live progress (`live-progress.ts`), blob grants
 * (`blob-grants.ts`) and upload checks (`upload-checks.ts`), audit (`audit.ts`), network watchers
 * (`watchers.ts`), enrollment (`enrollment.ts`), hosts (`hosts.ts`: VMs and scale sets), and the
 * tenancy parts it exposes as they are: subscriptions, API tokens, enrollment tokens and storage
 * accounts. No HTTP and no SQL: routes call it, it calls the Store and the AgentLink; the store is
 * reachable only through it.
 */
export class ControlPlane {
  readonly subscriptions: Subscriptions;
  readonly tokens: ApiTokens;
  readonly enrollmentTokens: EnrollmentTokens;
  readonly storageAccounts: StorageAccounts;
  /** VMs and scale sets: reads and deregistration (hosts.ts). */
  readonly hosts: Hosts;
  readonly #ctx: ControlContext;
  readonly #quota: number;
  readonly #memory: SessionMemory;
  readonly #operations: CaptureOperations;
  readonly #uploads: UploadChecks;
  readonly #watchers: NetworkWatchers;
  readonly #captures: Captures;
  readonly #scaleSetCaptures: ScaleSetCaptures;
  readonly #agentsSide: AgentReconciler;
  readonly #enrollment: Enrollment;

  constructor(options: ControlPlaneOptions) {
    this.#quota = options.quota ?? DEFAULT_QUOTA;
    const ctx: ControlContext = {
      store: options.store,
      agents: options.agents,
      now: options.now ?? (() => new Date()),
      log: options.log ?? (() => undefined),
    };
    this.#ctx = ctx;
    const memory: SessionMemory = {
      progress: new LiveProgress(ctx, options.progressPersistMs ?? 30_000),
      deadlines: new DeadlineBackstop(ctx, options.deadlineGraceMs ?? 30_000),
    };
    this.#memory = memory;
    const operations = new CaptureOperations(ctx, memory, options.operationTimeoutMs ?? 60_000);
    this.#operations = operations;
    const grants = new BlobGrants(ctx, {
      openStorageAccount: options.openStorageAccount,
      uploadGraceMs: options.uploadGraceMs ?? 3_600_000,
    });
    this.#uploads = new UploadChecks(ctx, {
      grants,
      operations,
      backoff: options.uploadCheckBackoff ?? { minMs: 10_000, maxMs: 600_000 },
    });
    this.#watchers = new NetworkWatchers(ctx, memory, operations);
    this.#scaleSetCaptures = new ScaleSetCaptures(ctx, { memory, operations, grants });
    this.#captures = new Captures(ctx, {
      scaleSets: this.#scaleSetCaptures,
      memory,
      operations,
      grants,
      watchers: this.#watchers,
      quota: this.#quota,
    });
    this.#agentsSide = new AgentReconciler(ctx, {
      memory,
      operations,
      grants,
      uploads: this.#uploads,
      scaleSets: this.#scaleSetCaptures,
    });
    this.#enrollment = new Enrollment(ctx, this.#watchers);
    this.subscriptions = new Subscriptions(ctx);
    this.tokens = new ApiTokens(ctx);
    this.enrollmentTokens = new EnrollmentTokens(ctx);
    this.storageAccounts = new StorageAccounts(ctx, options.probeStorageAccount);
    this.hosts = new Hosts(ctx, this.#agentsSide);
  }

  get quota(): number {
    return this.#quota;
  }

  isAgentConnected(vmId: string): boolean {
    return this.#ctx.agents.isConnected(vmId);
  }

  // ---- packet captures (captures.ts) --------------------------------------------------------

  createCapture(
    ref: CaptureRef,
    body: PacketCaptureInput,
    caller: Caller,
  ): Promise<{ kind: 'created' | 'exists'; session: SessionRecord; operation?: OperationRecord }> {
    return this.#captures.create(ref, body, caller);
  }

  getCapture(ref: CaptureRef): Promise<SessionRecord> {
    return this.#captures.get(ref);
  }

  /** A page of a watcher's captures as stored; {@link withLiveProgress} adds live progress. */
  listCaptures(ref: Omit<CaptureRef, 'name'>, page: PageRequest): Promise<Page<SessionRecord>> {
    return this.#captures.list(ref, page);
  }

  /**
   * A scale-set capture's instances (its child sessions, with live progress), by instance id as
   * a number; empty for a capture of one VM.
   */
  instanceSessions(parent: SessionRecord): Promise<InstanceSession[]> {
    return this.#scaleSetCaptures.instanceSessions(parent);
  }

  /** Captures per status, across all tenants (for /metrics). */
  countCapturesByStatus(): Promise<Record<SessionStatus, number>> {
    return this.#captures.countByStatus();
  }

  /** The registered storage account a capture's storageId names, if any (storage-accounts.ts). */
  captureStorageAccount(session: SessionRecord): Promise<StorageAccountRecord | undefined> {
    return captureStorageAccount(this.#ctx, session);
  }

  withLiveProgress(session: SessionRecord): SessionRecord {
    return this.#memory.progress.withLive(session);
  }

  stopCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    return this.#captures.stop(ref, caller);
  }

  deleteCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ kind: 'gone' | 'deleted' } | { kind: 'pending'; operation: OperationRecord }> {
    return this.#captures.delete(ref, caller);
  }

  /** Checks again the uploads storage could not confirm (upload-checks.ts). */
  retryUploadChecks(): Promise<number> {
    return this.#uploads.retry();
  }

  // ---- agents (agent-reconciliation.ts, enrollment.ts) ---------------------------------------

  agentHello(vm: VmRecord, observed: readonly ObservedSession[]): Promise<void> {
    return this.#agentsSide.hello(vm, observed);
  }

  agentMessage(vm: VmRecord, message: AgentMessage): Promise<void> {
    return this.#agentsSide.message(vm, message);
  }

  /** The agent's channel closed: its VM was last seen now. */
  agentSeen(vmId: string): Promise<void> {
    return this.#agentsSide.seen(vmId);
  }

  findEnrollmentToken(token: string | undefined): Promise<EnrollmentTokenRecord | undefined> {
    return this.#enrollment.findUsableToken(token);
  }

  /** The VM whose agent holds this credential; undefined when none does. */
  agentVm(credential: string): Promise<VmRecord | undefined> {
    return this.#enrollment.vmOfCredential(credential);
  }

  checkEnrollmentUses(record: EnrollmentTokenRecord): void {
    this.#enrollment.checkUses(record);
  }

  enroll(
    record: EnrollmentTokenRecord,
    body: EnrollRequest,
    options: { sourceIp: string; maxVmsPerSubscription: number },
  ): Promise<Enrolled> {
    return this.#enrollment.enroll(record, body, options);
  }

  // ---- deadlines and operations (deadlines.ts, operations.ts) ---------------------------------

  /** The server's backstop for captures running well past their time limit. */
  sweepDeadlines(): Promise<number> {
    return this.#memory.deadlines.sweep();
  }

  /** Ends the captures whose operations were not acknowledged in time. */
  sweepOperations(): Promise<number> {
    return this.#operations.sweep();
  }

  /** GET of an operation: OperationNotFound unless the subscription has it in that location. */
  getOperation(subscriptionId: string, location: string, id: string): Promise<OperationRecord> {
    return this.#operations.get(subscriptionId, location, id);
  }

  /** An operation that is complete as soon as it exists (watcher delete). */
  completedOperation(
    kind: OperationKind,
    subscriptionId: string,
    location: string,
    resourceId: string,
  ): Promise<OperationRecord> {
    return this.#operations.completed(kind, subscriptionId, location, resourceId);
  }

  // ---- network watchers (watchers.ts) --------------------------------------------------------

  requireWatcher(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
  ): Promise<NetworkWatcherRecord> {
    return this.#watchers.require(subscriptionId, resourceGroup, watcherName);
  }

  /** GET: ResourceNotFound when there is no such watcher. */
  getWatcher(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
  ): Promise<NetworkWatcherRecord> {
    return this.#watchers.get(subscriptionId, resourceGroup, name);
  }

  listWatchers(subscriptionId: string, resourceGroup?: string): Promise<NetworkWatcherRecord[]> {
    return this.#watchers.list(subscriptionId, resourceGroup);
  }

  putWatcher(input: WatcherPut): Promise<Upserted<NetworkWatcherRecord>> {
    return this.#watchers.put(input);
  }

  /** Ends the watcher's running captures, deletes it, audited; undefined when there was none. */
  deleteWatcher(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
    caller: Caller,
  ): Promise<OperationRecord | undefined> {
    return this.#watchers.delete(subscriptionId, resourceGroup, name, caller);
  }

  ensureWatcherFor(subscriptionId: string, location: string): Promise<void> {
    return this.#watchers.ensureFor(subscriptionId, location);
  }

  watcherId(w: NetworkWatcherRecord): string {
    return watcherResourceId(w.subscriptionId, w.resourceGroup, w.name);
  }

  // ---- audit (audit.ts) -----------------------------------------------------------------------

  /** Appends an audit entry of the caller, stamped now. */
  audit(caller: Caller, entry: AuditEntry): Promise<void> {
    return appendAudit(this.#ctx, caller, entry);
  }

  /** A page of the subscription's audit log, newest first. */
  listAudit(subscriptionId: string, page: PageRequest): Promise<Page<AuditRecord>> {
    return this.#ctx.store.listAudit(subscriptionId, page);
  }
}
