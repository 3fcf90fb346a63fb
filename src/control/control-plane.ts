import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { MAX_UPLOAD_BLOBS } from '../model/channel.js';
import type {
  AgentMessage,
  CaptureAssignment,
  UploadReport,
  ObservedSession,
  ServerMessage,
  StopRequestReason,
} from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type {
  NetworkWatcherRecord,
  OperationKind,
  OperationRecord,
  SessionError,
  SessionPatch,
  SessionProgress,
  SessionRecord,
  SessionStatus,
  SessionStopReason,
  StorageAccountRecord,
  Store,
  VmRecord,
} from '../store/store.js';
import {
  canonicalJson,
  checkCaptureFilePath,
  parseCaptureBody,
  parseStorageAccountId,
  withoutStoragePath,
  type PacketCaptureBody,
} from './capture-parameters.js';
import { captureResourceId, vmResourceId, watcherResourceId } from './resource-ids.js';
import { captureBlobName, ringFileBlobUrl } from '../blob/blob-names.js';
import { blobNameOfUrl } from '../blob/storage-account.js';
import {
  acceptReportedFiles,
  matchReportedBlobs,
  plannedCapturePath,
  type SessionBlob,
} from './session-files.js';

/** How the control plane reaches agents; the server's agent hub implements it. */
export interface AgentLink {
  isConnected(vmId: string): boolean;
  /** Sends if the agent is connected; false when it is not. */
  send(vmId: string, message: ServerMessage): boolean;
}

/** Who asked, for the audit log. */
export interface Caller {
  /** `admin`, `token:<id>` or `agent:<id>`. */
  readonly actor: string;
  readonly sourceIp: string;
}

/** What the control plane needs of a storage account: blob URLs and write-only SAS tokens. */
export interface BlobWriter {
  blobUrl(blobName: string): string;
  /** A SAS (query, no `?`) allowing only create and write of that one blob until `expiresOn`. */
  mintWriteSas(blobName: string, expiresOn: Date): string;
  /** The committed blob's length; undefined when it does not exist. */
  blobSize(blobName: string): Promise<number | undefined>;
}

export interface ControlPlaneOptions {
  readonly store: Store;
  readonly agents: AgentLink;
  /** Opens a storage account for minting SAS tokens (the server wires @azure/storage-blob). */
  readonly openStorageAccount?: (record: StorageAccountRecord) => BlobWriter;
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
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;
}

export interface CaptureRef {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly watcherName: string;
  readonly name: string;
}

export const DEFAULT_QUOTA = 10_000;
const ACTIVE: readonly SessionStatus[] = ['NotStarted', 'Running'];

export function isActive(status: SessionStatus): boolean {
  return status === 'NotStarted' || status === 'Running';
}

/**
 * The control plane's domain logic: the capture lifecycle, quota, targets, reconciliation with
 * agents, long-running operations and the deadline backstop. No HTTP and no SQL: routes call it,
 * it calls the Store and the AgentLink.
 */
export class ControlPlane {
  readonly store: Store;
  readonly #agents: AgentLink;
  readonly #quota: number;
  readonly #now: () => Date;
  readonly #graceMs: number;
  readonly #persistMs: number;
  readonly #log: NonNullable<ControlPlaneOptions['log']>;
  readonly #openStorageAccount: ControlPlaneOptions['openStorageAccount'];
  readonly #uploadGraceMs: number;
  readonly #operationTimeoutMs: number;
  /**
   * When each open operation is due, by operation id: filled as operations open (and once from
   * the store, for those a previous server process opened), emptied as they complete.
   */
  readonly #operationsDue = new Map<string, { sessionId: string; dueMs: number }>();
  #operationsLoaded: Promise<void> | undefined;
  /**
   * Deadlines of the sessions agents report running, for the backstop: it looks only at these
   * instead of loading every running session. An agent reports what it runs on every connect,
   * so after a server restart the map refills as agents come back (a disconnected agent's
   * captures are not stopped by the backstop anyway).
   */
  readonly #deadlines = new Map<string, { vmId: string; deadlineMs: number }>();
  /**
   * Completed uploads storage could not confirm yet, by session id (see #recordUpload): the
   * latest report, how many checks failed, and when the next one is due (control plane clock).
   */
  readonly #uploadChecks = new Map<
    string,
    { vmId: string; report: UploadReport; failures: number; dueMs: number }
  >();
  /** Sessions whose upload is being checked against storage right now. */
  readonly #checkingUploads = new Set<string>();
  readonly #uploadCheckBackoff: { readonly minMs: number; readonly maxMs: number };
  #retryingUploads = false;
  /** Last blob-name time used per VM, so two captures of one VM never share a blob. */
  readonly #lastBlobTime = new Map<string, number>();
  /** Live progress by session id; the store gets it every progressPersistMs and at the end. */
  readonly #progress = new Map<
    string,
    { progress: SessionProgress; persistedAt: number; vmId: string }
  >();

  constructor(options: ControlPlaneOptions) {
    this.store = options.store;
    this.#agents = options.agents;
    this.#quota = options.quota ?? DEFAULT_QUOTA;
    this.#now = options.now ?? (() => new Date());
    this.#graceMs = options.deadlineGraceMs ?? 30_000;
    this.#persistMs = options.progressPersistMs ?? 30_000;
    this.#log = options.log ?? (() => undefined);
    this.#openStorageAccount = options.openStorageAccount;
    this.#uploadGraceMs = options.uploadGraceMs ?? 3_600_000;
    this.#operationTimeoutMs = options.operationTimeoutMs ?? 60_000;
    this.#uploadCheckBackoff = options.uploadCheckBackoff ?? { minMs: 10_000, maxMs: 600_000 };
  }

  get quota(): number {
    return this.#quota;
  }

  isAgentConnected(vmId: string): boolean {
    return this.#agents.isConnected(vmId);
  }

  // ---- packet captures -------------------------------------------------------------------

  async requireWatcher(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
  ): Promise<NetworkWatcherRecord> {
    const watcher = await this.store.getWatcher(subscriptionId, resourceGroup, watcherName);
    if (!watcher) {
      throw new WirewatchError(
        'ParentResourceNotFound',
        `Network watcher '${watcherName}' was not found in resource group '${resourceGroup}'`,
        { target: 'networkWatcherName' },
      );
    }
    return watcher;
  }

  /**
   * PUT of a packet capture. 'exists' is an idempotent re-PUT (same body); a different body
   * for an existing name is a 409.
   */
  async createCapture(
    ref: CaptureRef,
    body: PacketCaptureBody,
    caller: Caller,
  ): Promise<{ kind: 'created' | 'exists'; session: SessionRecord; operation?: OperationRecord }> {
    const watcher = await this.requireWatcher(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
    );
    const parsed = parseCaptureBody(body);
    const vm = await this.#findTargetVm(ref.subscriptionId, parsed.target);
    if (vm.location !== watcher.location) {
      throw new WirewatchError(
        'TargetNotInNetworkWatcherLocation',
        `properties.target: VM '${vm.name}' is in location '${vm.location}' but network watcher '${watcher.name}' is in '${watcher.location}'; use the network watcher of '${vm.location}'`,
        { target: 'properties.target' },
      );
    }
    const id = randomUUID();
    const now = this.#now();
    const properties: Record<string, unknown> = { ...parsed.properties };
    let upload: SessionRecord['upload'] = null;
    if (parsed.storageAccount) {
      const account = await this.#findStorageAccount(ref.subscriptionId, parsed.storageAccount);
      const blobName = captureBlobName({
        subscriptionId: ref.subscriptionId,
        resourceGroup: vm.resourceGroup,
        vmName: vm.name,
        createdAt: this.#blobTime(vm.id, now),
      });
      const storageLocation = properties['storageLocation'] as Record<string, string>;
      properties['storageLocation'] = {
        ...storageLocation,
        storagePath: this.#blobWriter(account).blobUrl(blobName),
      };
      upload = { state: 'Pending', blobs: [], error: null };
    }
    // Without a local file asked for, the agent spools under its capture root and deletes the
    // spool once the blob is committed.
    const filePath = parsed.requestedPath
      ? checkCaptureFilePath(parsed.requestedPath.path, parsed.requestedPath.field, vm.captureRoot)
      : path.join(vm.captureRoot, '.wirewatch-spool', `${id}.cap`);
    const record: SessionRecord = {
      id,
      subscriptionId: ref.subscriptionId,
      resourceGroup: watcher.resourceGroup,
      watcherName: watcher.name,
      name: ref.name,
      location: watcher.location,
      vmId: vm.id,
      properties,
      status: 'NotStarted',
      stopReason: null,
      errors: [],
      captureStartTime: null,
      stopTime: null,
      progress: null,
      // Only files the agent reports having written for this session are ever recorded: the
      // path asked for may name a file that is not the capture's (another's, or a secret).
      files: [],
      stopRequested: null,
      deleteRequested: false,
      upload,
      etag: randomUUID(),
      createdAt: now,
      updatedAt: now,
    };
    const result = await this.store.createSession(record, this.#quota);
    switch (result.kind) {
      case 'quota-exceeded':
        throw new WirewatchError(
          'PacketCaptureQuotaExceeded',
          `Subscription '${ref.subscriptionId}' already has ${result.active} packet captures NotStarted or Running in location '${watcher.location}'; the limit is ${this.#quota}. Stop or delete some first.`,
        );
      case 'exists': {
        const same =
          canonicalJson(withoutStoragePath(result.session.properties)) ===
            canonicalJson(parsed.properties) && !result.session.deleteRequested;
        if (!same) {
          throw new WirewatchError(
            'PacketCaptureAlreadyExists',
            `Packet capture '${result.session.name}' already exists with different properties; delete it first or use another name`,
            { target: 'packetCaptureName' },
          );
        }
        return { kind: 'exists', session: result.session };
      }
      case 'created': {
        const operation = await this.#openOperation('create', result.session);
        await this.#audit(caller, 'packetCapture.create', result.session, {
          target: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name),
          filePath,
        });
        await this.#sendStart(result.session, vm);
        await this.#settle(result.session.id);
        return { kind: 'created', session: result.session, operation };
      }
    }
  }

  async #findTargetVm(
    subscriptionId: string,
    target: { subscriptionId: string; resourceGroup: string; name: string },
  ): Promise<VmRecord> {
    // Another subscription's VM reads exactly like a VM that does not exist.
    const vm =
      target.subscriptionId.toLowerCase() === subscriptionId.toLowerCase()
        ? await this.store.getVm(subscriptionId, target.resourceGroup, target.name)
        : undefined;
    if (!vm) {
      throw new WirewatchError(
        'InvalidTarget',
        `properties.target: no virtual machine '${target.name}' with a registered agent exists in resource group '${target.resourceGroup}' of this subscription`,
        { target: 'properties.target' },
      );
    }
    return vm;
  }

  async #findStorageAccount(
    subscriptionId: string,
    ref: { subscriptionId: string; resourceGroup: string; name: string },
  ): Promise<StorageAccountRecord> {
    // Another subscription's account reads exactly like one that does not exist.
    const account =
      ref.subscriptionId.toLowerCase() === subscriptionId.toLowerCase()
        ? await this.store.getStorageAccount(subscriptionId, ref.resourceGroup, ref.name)
        : undefined;
    if (!account) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        `properties.storageLocation.storageId: no storage account '${ref.name}' is registered in resource group '${ref.resourceGroup}' of this subscription (POST /api/v1/subscriptions/{s}/storageAccounts)`,
        { target: 'properties.storageLocation.storageId' },
      );
    }
    return account;
  }

  #blobWriter(account: StorageAccountRecord): BlobWriter {
    if (!this.#openStorageAccount) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        'properties.storageLocation.storageId: this server has no blob storage support configured',
        { target: 'properties.storageLocation.storageId' },
      );
    }
    return this.#openStorageAccount(account);
  }

  /** The creation time a blob name is built from: unique per VM to the millisecond. */
  #blobTime(vmId: string, now: Date): Date {
    const last = this.#lastBlobTime.get(vmId) ?? 0;
    const t = Math.max(now.getTime(), last + 1);
    this.#lastBlobTime.set(vmId, t);
    return new Date(t);
  }

  /** A session's storage location and the storage account its storageId names (if registered). */
  async #storageOf(
    session: SessionRecord,
  ): Promise<{ location: StorageLocation; account: StorageAccountRecord | undefined }> {
    const location = storageLocationOf(session);
    const ref = location.storageId ? parseStorageAccountId(location.storageId) : undefined;
    const account = ref
      ? await this.store.getStorageAccount(session.subscriptionId, ref.resourceGroup, ref.name)
      : undefined;
    return { location, account };
  }

  /** The blob target of a session stored in a storage account, with a fresh SAS. */
  async #blobTarget(session: SessionRecord): Promise<CaptureAssignment['blob']> {
    const { location, account } = await this.#storageOf(session);
    if (!account || !location.storagePath) return undefined;
    const writer = this.#blobWriter(account);
    const expiresAt = this.#sasExpiry(session);
    const continuous = (session.properties as { continuousCapture?: boolean }).continuousCapture;
    const blobName = blobNameOf(account, location.storagePath);
    return {
      url: location.storagePath,
      ...(continuous === true ? {} : { sas: writer.mintWriteSas(blobName, expiresAt) }),
      expiresAt: expiresAt.toISOString(),
      spoolOnly: location.filePath === undefined && location.localPath === undefined,
    };
  }

  /** The session's deadline (start, or now if not started, plus its time limit) plus the grace. */
  #sasExpiry(session: SessionRecord): Date {
    const start = session.captureStartTime?.getTime() ?? this.#now().getTime();
    return new Date(start + timeLimitOf(session) * 1000 + this.#uploadGraceMs);
  }

  async #sendStart(session: SessionRecord, vm: VmRecord): Promise<void> {
    if (!this.#agents.isConnected(session.vmId)) return;
    let assignment = assignmentOf(session, vm.captureRoot);
    try {
      const blob = await this.#blobTarget(session);
      if (blob) assignment = { ...assignment, blob };
    } catch (err) {
      this.#log('error', 'could not mint the blob SAS; the capture stays local', {
        sessionId: session.id,
        err: err instanceof Error ? err.message : String(err),
      });
    }
    this.#agents.send(session.vmId, { type: 'start', assignment });
  }

  /**
   * Answers a ring's `blobGrantRequest` with a SAS for that one file, and records the number:
   * an upload report is checked against storage only for numbers granted here. Refused (not
   * answered; logged) for a session that is no ring, whose upload has ended, or beyond the
   * bounds of ringGrantBounds.
   */
  async #grantRingFile(vm: VmRecord, session: SessionRecord, fileIndex: number): Promise<void> {
    if (!isContinuous(session) || session.upload?.state !== 'Pending') {
      this.#log('warn', 'agent asked for a ring file SAS its session cannot have; refused', {
        agentId: vm.id,
        sessionId: session.id,
        fileIndex,
      });
      return;
    }
    const { location, account } = await this.#storageOf(session);
    if (!account || !location.storagePath) return;
    const granted = await this.store.grantRingFile(session.id, fileIndex, ringGrantBounds(session));
    if (granted.kind === 'refused') {
      this.#log('warn', 'agent asked for a ring file SAS beyond what its ring can need; refused', {
        agentId: vm.id,
        sessionId: session.id,
        fileIndex,
        highestGranted: granted.highest,
        granted: granted.count,
      });
      return;
    }
    const url = ringFileBlobUrl(location.storagePath, fileIndex);
    const expiresAt = this.#sasExpiry(session);
    this.#agents.send(vm.id, {
      type: 'blobGrant',
      sessionId: session.id,
      fileIndex,
      url,
      sas: this.#blobWriter(account).mintWriteSas(blobNameOf(account, url), expiresAt),
      expiresAt: expiresAt.toISOString(),
    });
  }

  /**
   * Records an agent's upload report. Nothing of it is taken on the agent's word: a Pending
   * report keeps no blobs; a Failed one keeps the agent's error and no blobs; a Completed one
   * becomes Completed only once every blob it names is one the server minted for this session
   * (see matchReportedBlobs) and storage, read with the server's key, holds it with the length
   * the agent reported — the URLs and lengths stored are the server's. Anything else is
   * Failed/StorageFailed. When storage cannot be asked right now the report waits (the session
   * stays Pending) and 'deferred' tells the caller not to acknowledge it: the check is retried by
   * retryUploadChecks, and the agent, unacknowledged, offers the report again when it reconnects.
   */
  async #recordUpload(
    vm: VmRecord,
    session: SessionRecord,
    report: UploadReport,
    retry = false,
  ): Promise<'recorded' | 'deferred'> {
    if (!session.upload) return 'recorded';
    // A final outcome is never taken back: not by a late Pending (an old hello crossing
    // `uploaded`), and not by another Completed or Failed report. An agent resends its report
    // until it is acknowledged (every reconnect, every hello): once checked, it is only
    // acknowledged, never checked against storage again.
    if (session.upload.state !== 'Pending') return 'recorded';
    if (report.state === 'Pending') {
      await this.store.updateSession(session.id, {
        upload: { state: 'Pending', blobs: [], error: null },
      });
      return 'recorded';
    }
    if (report.state === 'Failed') {
      this.#uploadChecks.delete(session.id);
      await this.store.updateSession(session.id, {
        upload: {
          state: 'Failed',
          blobs: [],
          error: report.error
            ? { code: report.error.code, message: report.error.message }
            : { code: 'StorageFailed', message: 'The upload to the storage account failed' },
        },
      });
      return 'recorded';
    }
    const waiting = this.#uploadChecks.get(session.id);
    if ((waiting && !retry) || this.#checkingUploads.has(session.id)) {
      // A check of this session failed for storage and waits for its turn, or one is running:
      // the report (the agent's latest word) waits with it instead of asking storage now.
      this.#uploadChecks.set(session.id, {
        vmId: vm.id,
        report,
        failures: waiting?.failures ?? 0,
        dueMs: waiting?.dueMs ?? this.#now().getTime(),
      });
      return 'deferred';
    }
    this.#checkingUploads.add(session.id);
    let checked: NonNullable<SessionRecord['upload']> | 'unreachable';
    try {
      checked = await this.#checkCompletedUpload(session, report);
    } finally {
      this.#checkingUploads.delete(session.id);
    }
    if (checked === 'unreachable') {
      const failures = (waiting?.failures ?? 0) + 1;
      const { minMs, maxMs } = this.#uploadCheckBackoff;
      const delay = Math.min(maxMs, minMs * 2 ** Math.min(failures - 1, 30));
      // A report that arrived while this one was checked is the one checked next.
      const latest = this.#uploadChecks.get(session.id)?.report ?? report;
      this.#uploadChecks.set(session.id, {
        vmId: vm.id,
        report: latest,
        failures,
        dueMs: this.#now().getTime() + delay,
      });
      return 'deferred';
    }
    // A report that came in during the check stays queued: the retry pass acknowledges it.
    if (this.#uploadChecks.get(session.id) === waiting) this.#uploadChecks.delete(session.id);
    await this.store.updateSession(session.id, { upload: checked });
    return 'recorded';
  }

  /** A Completed report checked against the session's own blob names and storage. */
  async #checkCompletedUpload(
    session: SessionRecord,
    report: UploadReport,
  ): Promise<NonNullable<SessionRecord['upload']> | 'unreachable'> {
    const fail = (message: string) => ({
      state: 'Failed' as const,
      blobs: [],
      error: { code: 'StorageFailed', message },
    });
    const { location, account } = await this.#storageOf(session);
    if (!account || !location.storagePath) {
      return fail('the storage account is no longer registered');
    }
    const blobName = blobNameOfUrl(account.blobEndpoint, location.storagePath);
    if (blobName === undefined) return fail('the capture has no blob of this storage account');
    const matched = matchReportedBlobs(report.blobs, {
      storagePath: location.storagePath,
      blobName,
      continuous: isContinuous(session),
    });
    if (matched.kind === 'foreign') {
      this.#log('warn', "agent reported a blob that is not its session's; upload refused", {
        sessionId: session.id,
        url: matched.url.slice(0, 256),
      });
      return fail("the agent reported a blob that is not this capture's");
    }
    if (isContinuous(session)) {
      // Only files the server granted a SAS for can have been written: a number it never
      // granted fails the report before storage is asked anything.
      const granted = new Set(await this.store.listRingGrants(session.id));
      const stray = matched.blobs.find(
        (b) => b.fileIndex === undefined || !granted.has(b.fileIndex),
      );
      if (stray) {
        this.#log('warn', 'agent reported a ring file it was never granted; upload refused', {
          sessionId: session.id,
          fileIndex: stray.fileIndex,
          reported: matched.blobs.length,
        });
        return fail(
          `the agent reported ring file ${stray.fileIndex}, which it was never granted a SAS for`,
        );
      }
    }
    const writer = this.#blobWriter(account);
    const blobs: { url: string; size: number }[] = [];
    const sizes = await mapLimited(matched.blobs, 8, async (blob: SessionBlob) => {
      try {
        return { blob, size: await writer.blobSize(blob.name) };
      } catch (err) {
        this.#log('warn', 'could not check an uploaded blob; the check is retried', {
          sessionId: session.id,
          err: err instanceof Error ? err.message : String(err),
        });
        return undefined;
      }
    });
    for (const checked of sizes) {
      if (checked === undefined) return 'unreachable';
      const { blob, size } = checked;
      if (size !== blob.reportedSize) {
        return fail(
          `blob ${blob.name} holds ${size ?? 'nothing'} bytes, the agent uploaded ${blob.reportedSize}`,
        );
      }
      blobs.push({ url: blob.url, size });
    }
    return { state: 'Completed', blobs, error: null };
  }

  /**
   * Checks again the Completed uploads that storage could not confirm when they were reported;
   * each checked one is recorded and acknowledged to its agent. Returns how many were settled.
   */
  async retryUploadChecks(): Promise<number> {
    // One pass at a time: with storage down a pass can outlast the sweep interval.
    if (this.#retryingUploads) return 0;
    this.#retryingUploads = true;
    try {
      return await this.#retryUploadChecks();
    } finally {
      this.#retryingUploads = false;
    }
  }

  async #retryUploadChecks(): Promise<number> {
    let settled = 0;
    const now = this.#now().getTime();
    for (const [sessionId, { vmId, report, dueMs }] of [...this.#uploadChecks]) {
      // Backing off: storage errored on this one not long ago.
      if (dueMs > now) continue;
      const session = await this.store.getSessionById(sessionId);
      const vm = session ? await this.store.getVmById(session.vmId) : undefined;
      if (!session || !vm || vm.id !== vmId) {
        this.#uploadChecks.delete(sessionId);
        continue;
      }
      if ((await this.#recordUpload(vm, session, report, true)) === 'deferred') continue;
      this.#uploadChecks.delete(sessionId);
      settled += 1;
      this.#agents.send(vmId, { type: 'ack', sessionId });
      await this.#settle(sessionId);
    }
    return settled;
  }

  async getCapture(ref: CaptureRef): Promise<SessionRecord> {
    const session = await this.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) throw notFound(ref);
    return this.withLiveProgress(session);
  }

  withLiveProgress(session: SessionRecord): SessionRecord {
    const live = this.#progress.get(session.id);
    return live ? { ...session, progress: live.progress } : session;
  }

  /** POST …/stop: undefined operation when the capture had already ended (200). */
  async stopCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    const session = await this.getCapture(ref);
    await this.#audit(caller, 'packetCapture.stop', session, { status: session.status });
    if (!isActive(session.status)) return { session };
    return this.#requestStop(session, 'ManualIntervention', 'stop');
  }

  /** DELETE: 'gone' when there was nothing (204), 'deleted' when removed at once (204). */
  async deleteCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ kind: 'gone' | 'deleted' } | { kind: 'pending'; operation: OperationRecord }> {
    const session = await this.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) return { kind: 'gone' };
    await this.#audit(caller, 'packetCapture.delete', session, { status: session.status });
    if (!isActive(session.status)) {
      await this.#forget(session.id);
      return { kind: 'deleted' };
    }
    await this.store.updateSession(session.id, { deleteRequested: true });
    const { operation } = await this.#requestStop(session, 'ManualIntervention', 'delete');
    return { kind: 'pending', operation: operation! };
  }

  async #requestStop(
    session: SessionRecord,
    reason: StopRequestReason,
    kind: OperationKind,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    let updated: SessionRecord | undefined;
    if (session.status === 'NotStarted' && !this.#agents.isConnected(session.vmId)) {
      // The agent never got it: end it here. If the agent did start it after all, the next
      // hello reports it and reconciliation stops it.
      updated = await this.#finish(session, { stopReason: reason, status: 'Stopped' });
    } else {
      updated = await this.store.updateSession(session.id, { stopRequested: reason });
      this.#agents.send(session.vmId, { type: 'stop', sessionId: session.id, reason });
    }
    const operation = await this.#openOperation(kind, updated ?? session);
    await this.#settle(session.id);
    return { session: updated ?? session, operation };
  }

  // ---- agents -------------------------------------------------------------------------------

  /**
   * Reconciles an agent's report with the desired state (kubelet-style) after it (re)connects.
   * A large report is worked through in slices that yield to the event loop, so one agent's
   * `hello` never holds up the server (other agents, the API) for long.
   */
  async agentHello(vm: VmRecord, observed: readonly ObservedSession[]): Promise<void> {
    await this.store.touchVm(vm.id, this.#now());
    const seen = new Set<string>();
    let sliceStart = performance.now();
    for (const o of observed) {
      if (performance.now() - sliceStart > HELLO_SLICE_MS) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
      seen.add(o.sessionId);
      await this.#reconcileObserved(vm, o);
    }
    for (const session of await this.store.listSessionsByVm(vm.id, ACTIVE)) {
      if (performance.now() - sliceStart > HELLO_SLICE_MS) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
      if (seen.has(session.id)) continue;
      if (session.status === 'Running') {
        // The agent lost it (its data dir went away): what it captured is not reachable.
        await this.#finish(session, {
          status: 'Stopped',
          stopReason: 'AgentRestarted',
          errors: [
            {
              code: 'AgentStopped',
              message: 'The agent restarted without a record of this capture',
            },
          ],
        });
      } else if (session.stopRequested) {
        await this.#finish(session, { status: 'Stopped', stopReason: session.stopRequested });
      } else {
        await this.#sendStart(session, vm);
      }
      await this.#settle(session.id);
    }
  }

  /** One session of a `hello`. */
  async #reconcileObserved(vm: VmRecord, o: ObservedSession): Promise<void> {
    const session = await this.store.getSessionById(o.sessionId);
    if (!session || session.vmId !== vm.id) {
      if (session) {
        this.#log('warn', 'agent reported a session of another VM; ignored', {
          agentId: vm.id,
          sessionId: o.sessionId,
        });
      }
      // Not ours or long gone: make sure it stops, and let the agent forget it. Another VM's
      // session is left alone on the server; the agent only learns it has nothing to do.
      if (o.state === 'Running') {
        this.#agents.send(vm.id, {
          type: 'stop',
          sessionId: o.sessionId,
          reason: 'ManualIntervention',
        });
      } else {
        this.#agents.send(vm.id, { type: 'ack', sessionId: o.sessionId });
      }
      return;
    }
    if (o.state === 'Stopped') {
      await this.#recordStopped(vm, session, {
        stopReason: o.stopReason ?? 'Error',
        ...(o.startTime === undefined ? {} : { startTime: o.startTime }),
        stopTime: o.stopTime ?? this.#now().toISOString(),
        progress: o.progress ?? {
          packets: 0,
          bytes: 0,
          kernelDrops: 0,
          at: this.#now().toISOString(),
        },
        ...(o.error === undefined ? {} : { error: o.error }),
        files: o.files ?? [],
      });
      const upload = o.upload ? await this.#recordUpload(vm, session, o.upload) : 'recorded';
      // Unacknowledged, the agent keeps the session and reports it again.
      if (upload === 'recorded') this.#agents.send(vm.id, { type: 'ack', sessionId: session.id });
      await this.#settle(session.id);
      return;
    }
    if (o.upload) await this.#recordUpload(vm, session, o.upload);
    // Running on the agent.
    if (!isActive(session.status) || session.stopRequested) {
      this.#agents.send(vm.id, {
        type: 'stop',
        sessionId: o.sessionId,
        reason: toRequestReason(session.stopRequested ?? session.stopReason),
      });
    }
    let startTime = session.captureStartTime;
    if (session.status === 'NotStarted') {
      startTime = o.startTime ? new Date(o.startTime) : this.#now();
      await this.store.updateSession(session.id, {
        status: 'Running',
        captureStartTime: startTime,
        ...startedFiles(session, vm.captureRoot),
      });
    }
    if (isActive(session.status) && startTime) this.#noteDeadline(session, startTime);
    if (o.progress) this.#noteProgress(session.id, vm.id, o.progress);
    await this.#settle(session.id);
  }

  /**
   * A session's end as its agent reports it (`stopped`, or Stopped in `hello`). Of the files,
   * only those named as the session's plan names them are kept (acceptReportedFiles).
   */
  async #recordStopped(
    vm: VmRecord,
    session: SessionRecord,
    message: Omit<Extract<AgentMessage, { type: 'stopped' }>, 'type' | 'sessionId'>,
  ): Promise<void> {
    const progress = toProgress(message.progress);
    this.#progress.delete(session.id);
    this.#deadlines.delete(session.id);
    const continuous =
      (session.properties as { continuousCapture?: boolean }).continuousCapture === true;
    let files: string[] = [];
    try {
      const accepted = acceptReportedFiles(
        message.files,
        plannedCapturePath(session, vm.captureRoot),
        vm.captureRoot,
        continuous,
      );
      files = accepted.files;
      if (accepted.refused.length > 0) {
        this.#log('warn', "agent reported files that are not its session's; ignored", {
          agentId: vm.id,
          sessionId: session.id,
          refused: accepted.refused.slice(0, 5).map((f) => f.slice(0, 256)),
        });
      }
    } catch (err) {
      // The VM's capture root changed since the capture was created: keep no file.
      this.#log('warn', 'cannot match the files an agent reported', {
        sessionId: session.id,
        err: err instanceof Error ? err.message : String(err),
      });
    }
    const patch: SessionPatch = {
      progress,
      ...(files.length > 0 || session.files.length === 0 ? { files } : {}),
      stopTime: stopTimeOf(
        session,
        message.stopReason,
        new Date(message.stopTime),
        session.captureStartTime ?? (message.startTime ? new Date(message.startTime) : null),
      ),
      ...(message.startTime && !session.captureStartTime
        ? { captureStartTime: new Date(message.startTime) }
        : {}),
    };
    if (isActive(session.status)) {
      const failed = message.stopReason === 'Error';
      await this.store.updateSession(session.id, {
        ...patch,
        status: failed ? 'Error' : 'Stopped',
        stopReason: message.stopReason,
        errors: message.error ? [{ code: message.error.code, message: message.error.message }] : [],
        stopRequested: null,
      });
    } else {
      // Already ended by the server (VM deleted, never started): keep its verdict, take the figures.
      await this.store.updateSession(session.id, patch);
    }
  }

  /** One message from an agent, after hello. The agent may only speak of its own sessions. */
  async agentMessage(vm: VmRecord, message: AgentMessage): Promise<void> {
    if (message.type === 'hello') {
      await this.agentHello(vm, message.sessions);
      return;
    }
    // File transfers and live streams are the agent hub's business, not the lifecycle's.
    if (
      message.type === 'readFileEnd' ||
      message.type === 'streamStats' ||
      message.type === 'streamEnd'
    ) {
      return;
    }
    // Progress is the bulk of the traffic (every agent, every session, every few seconds): for a
    // session already known to belong to this agent it touches only memory, and the store at
    // most every progressPersistMs. It cannot complete any operation, so nothing is settled.
    if (message.type === 'progress' && this.#progress.get(message.sessionId)?.vmId === vm.id) {
      await this.#recordProgress(message.sessionId, vm.id, message.progress);
      return;
    }
    const session = await this.store.getSessionById(message.sessionId);
    if (!session || session.vmId !== vm.id) {
      if (!session && (message.type === 'stopped' || message.type === 'uploaded')) {
        this.#agents.send(vm.id, { type: 'ack', sessionId: message.sessionId });
      } else if (session) {
        this.#log('warn', 'agent spoke of a session of another VM; ignored', {
          agentId: vm.id,
          sessionId: message.sessionId,
        });
      }
      return;
    }
    switch (message.type) {
      case 'started':
        if (session.status === 'NotStarted') {
          await this.store.updateSession(session.id, {
            status: 'Running',
            captureStartTime: new Date(message.startTime),
            ...startedFiles(session, vm.captureRoot),
          });
          this.#noteDeadline(session, new Date(message.startTime));
        }
        if (session.stopRequested || !isActive(session.status)) {
          // Asked to stop meanwhile, or ended by the server (a start acknowledged too late).
          this.#agents.send(vm.id, {
            type: 'stop',
            sessionId: session.id,
            reason: toRequestReason(session.stopRequested ?? session.stopReason),
          });
        }
        break;
      case 'progress':
        if (isActive(session.status)) {
          await this.#recordProgress(session.id, vm.id, message.progress);
        }
        return;
      case 'uploaded':
        if ((await this.#recordUpload(vm, session, message.upload)) === 'recorded') {
          this.#agents.send(vm.id, { type: 'ack', sessionId: session.id });
        }
        break;
      case 'blobGrantRequest':
        await this.#grantRingFile(vm, session, message.fileIndex);
        break;
      case 'stopped':
        await this.#recordStopped(vm, session, message);
        this.#agents.send(vm.id, { type: 'ack', sessionId: session.id });
        break;
    }
    await this.#settle(session.id);
  }

  /**
   * Deletes a VM (deregisters its agent): its running captures end with TargetDeleted, its
   * credential stops working, and the agent is told to stop and forget its enrollment.
   */
  async deleteVm(vm: VmRecord, caller: Caller): Promise<void> {
    for (const session of await this.store.listSessionsByVm(vm.id, ACTIVE)) {
      await this.#finish(session, { status: 'Stopped', stopReason: 'TargetDeleted' });
      await this.#settle(session.id);
    }
    this.#agents.send(vm.id, { type: 'deregistered' });
    await this.store.deleteVm(vm.id);
    await this.store.appendAudit({
      id: randomUUID(),
      subscriptionId: vm.subscriptionId,
      at: this.#now(),
      actor: caller.actor,
      action: 'virtualMachine.delete',
      resourceId: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name),
      sourceIp: caller.sourceIp,
      detail: {},
    });
  }

  /**
   * The server's backstop for deadlines: a capture still running well past its time limit
   * (the agent enforces it; this catches an agent that did not) is told to stop.
   */
  async sweepDeadlines(): Promise<number> {
    const now = this.#now().getTime();
    let stopped = 0;
    for (const [sessionId, entry] of [...this.#deadlines]) {
      if (now <= entry.deadlineMs + this.#graceMs) continue;
      if (!this.#agents.isConnected(entry.vmId)) continue;
      const session = await this.store.getSessionById(sessionId);
      this.#deadlines.delete(sessionId);
      if (!session || session.status !== 'Running' || session.stopRequested) continue;
      await this.store.updateSession(session.id, { stopRequested: 'TimeExceeded' });
      this.#agents.send(session.vmId, {
        type: 'stop',
        sessionId: session.id,
        reason: 'TimeExceeded',
      });
      stopped += 1;
    }
    return stopped;
  }

  #noteDeadline(session: SessionRecord, startTime: Date): void {
    this.#deadlines.set(session.id, {
      vmId: session.vmId,
      deadlineMs: startTime.getTime() + timeLimitOf(session) * 1000,
    });
  }

  // ---- operations ---------------------------------------------------------------------------

  async #openOperation(kind: OperationKind, session: SessionRecord): Promise<OperationRecord> {
    const now = this.#now();
    const operation: OperationRecord = {
      id: randomUUID(),
      subscriptionId: session.subscriptionId,
      location: session.location,
      kind,
      sessionId: session.id,
      resourceId: captureResourceId(
        session.subscriptionId,
        session.resourceGroup,
        session.watcherName,
        session.name,
      ),
      status: 'InProgress',
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.createOperation(operation);
    this.#operationsDue.set(operation.id, {
      sessionId: session.id,
      dueMs: now.getTime() + this.#operationTimeoutMs,
    });
    return operation;
  }

  /** Completes an operation. */
  async #closeOperation(
    id: string,
    patch: { status: 'Succeeded' | 'Failed'; error?: SessionError },
  ): Promise<void> {
    await this.store.updateOperation(id, patch);
    this.#operationsDue.delete(id);
  }

  /**
   * Holds every open operation to its deadline (operationTimeoutMs after it was asked for), so
   * that no client polls forever for an agent that never answers: a start not acknowledged by
   * then fails (the capture reads Error with AgentStopped); a stop or delete not acknowledged is
   * forced (the capture is recorded Stopped, with an AgentStopped detail saying so, and the
   * operation succeeds; the agent is told to stop whenever it speaks again). Returns how many
   * captures it ended.
   */
  async sweepOperations(): Promise<number> {
    this.#operationsLoaded ??= this.#loadOpenOperations().catch((err: unknown) => {
      this.#operationsLoaded = undefined;
      throw err;
    });
    await this.#operationsLoaded;
    const now = this.#now().getTime();
    const overdue = new Set<string>();
    for (const entry of this.#operationsDue.values()) {
      if (entry.dueMs <= now) overdue.add(entry.sessionId);
    }
    let ended = 0;
    for (const sessionId of overdue) {
      if (await this.#endOverdue(sessionId, now)) ended += 1;
    }
    return ended;
  }

  /** Operations a previous server process opened and did not complete. */
  async #loadOpenOperations(): Promise<void> {
    for (const op of await this.store.listInProgressOperations()) {
      if (this.#operationsDue.has(op.id) || op.sessionId === '') continue;
      this.#operationsDue.set(op.id, {
        sessionId: op.sessionId,
        dueMs: op.createdAt.getTime() + this.#operationTimeoutMs,
      });
    }
  }

  async #endOverdue(sessionId: string, now: number): Promise<boolean> {
    const open = await this.store.listOpenOperations(sessionId);
    const openIds = new Set(open.map((op) => op.id));
    for (const [id, entry] of this.#operationsDue) {
      if (entry.sessionId === sessionId && !openIds.has(id)) this.#operationsDue.delete(id);
    }
    const due = open.filter((op) => (this.#operationsDue.get(op.id)?.dueMs ?? Infinity) <= now);
    if (due.length === 0) return false;
    const session = await this.store.getSessionById(sessionId);
    let ended = false;
    if (session && isActive(session.status)) {
      const connected = this.#agents.isConnected(session.vmId);
      const seconds = Math.round(this.#operationTimeoutMs / 1000);
      const stopping = session.stopRequested !== null || due.some((op) => op.kind !== 'create');
      if (stopping) {
        const reason = session.stopRequested ?? 'ManualIntervention';
        await this.#finish(session, {
          status: 'Stopped',
          stopReason: reason,
          errors: [
            {
              code: 'AgentStopped',
              message: `Stop forced: the agent ${connected ? 'did not acknowledge the stop' : 'was not connected'} within ${seconds} s; it is told to stop whenever it reconnects`,
            },
          ],
        });
        this.#agents.send(session.vmId, {
          type: 'stop',
          sessionId,
          reason: toRequestReason(reason),
        });
        ended = true;
      } else if (session.status === 'NotStarted') {
        await this.#finish(session, {
          status: 'Error',
          stopReason: 'Error',
          errors: [
            {
              code: 'AgentStopped',
              message: connected
                ? `The agent did not acknowledge the start within ${seconds} s`
                : `The agent of the target VM was not connected within ${seconds} s`,
            },
          ],
        });
        // Should the start still arrive, it is undone.
        this.#agents.send(session.vmId, {
          type: 'stop',
          sessionId,
          reason: 'ManualIntervention',
        });
        ended = true;
      }
      this.#log('warn', 'an operation was not acknowledged in time', {
        sessionId,
        operations: due.map((op) => op.kind),
        connected,
      });
    }
    await this.#settle(sessionId);
    // Whatever settling could not complete (nothing should remain) is not looked at again.
    for (const op of due) this.#operationsDue.delete(op.id);
    return ended;
  }

  /** An operation that is complete as soon as it exists (watcher delete). */
  async completedOperation(
    kind: OperationKind,
    subscriptionId: string,
    location: string,
    resourceId: string,
  ): Promise<OperationRecord> {
    const now = this.#now();
    const operation: OperationRecord = {
      id: randomUUID(),
      subscriptionId,
      location,
      kind,
      sessionId: '',
      resourceId,
      status: 'Succeeded',
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.createOperation(operation);
    return operation;
  }

  /**
   * Completes every open operation of a session that its state now satisfies. Idempotent, and
   * called after every change, so an operation opened just after the change it waits for still
   * completes.
   */
  async #settle(sessionId: string): Promise<void> {
    const operations = await this.store.listOpenOperations(sessionId);
    if (operations.length === 0) return;
    const session = await this.store.getSessionById(sessionId);
    let deleted = false;
    for (const op of operations) {
      if (!session) {
        await this.#closeOperation(op.id, { status: 'Succeeded' });
        continue;
      }
      const ended = !isActive(session.status);
      switch (op.kind) {
        case 'create':
          if (
            session.status === 'Error' ||
            (ended && session.errors.length > 0 && !session.captureStartTime)
          ) {
            await this.#closeOperation(op.id, {
              status: 'Failed',
              error: session.errors[0] ?? { code: 'CaptureFailed', message: 'The capture failed' },
            });
          } else if (session.status !== 'NotStarted') {
            await this.#closeOperation(op.id, { status: 'Succeeded' });
          }
          break;
        case 'stop':
          if (ended) await this.#closeOperation(op.id, { status: 'Succeeded' });
          break;
        case 'delete':
          if (ended) {
            if (!deleted) await this.#forget(session.id);
            deleted = true;
            await this.#closeOperation(op.id, { status: 'Succeeded' });
          }
          break;
      }
    }
    if (session && session.deleteRequested && !isActive(session.status) && !deleted) {
      await this.#forget(session.id);
    }
  }

  async #forget(sessionId: string): Promise<void> {
    this.#progress.delete(sessionId);
    this.#deadlines.delete(sessionId);
    await this.store.deleteSession(sessionId);
  }

  async #finish(
    session: SessionRecord,
    patch: { status: SessionStatus; stopReason: SessionStopReason; errors?: SessionError[] },
  ): Promise<SessionRecord | undefined> {
    const live = this.#progress.get(session.id);
    this.#progress.delete(session.id);
    this.#deadlines.delete(session.id);
    return this.store.updateSession(session.id, {
      status: patch.status,
      stopReason: patch.stopReason,
      errors: patch.errors ?? [],
      stopTime: stopTimeOf(session, patch.stopReason, this.#now()),
      stopRequested: null,
      ...(live ? { progress: live.progress } : {}),
    });
  }

  #noteProgress(
    sessionId: string,
    vmId: string,
    progress: { packets: number; bytes: number; kernelDrops: number; at: string },
  ): void {
    const previous = this.#progress.get(sessionId);
    this.#progress.set(sessionId, {
      progress: toProgress(progress),
      persistedAt: previous?.persistedAt ?? 0,
      vmId,
    });
  }

  async #recordProgress(
    sessionId: string,
    vmId: string,
    progress: { packets: number; bytes: number; kernelDrops: number; at: string },
  ): Promise<void> {
    this.#noteProgress(sessionId, vmId, progress);
    const entry = this.#progress.get(sessionId)!;
    const now = this.#now().getTime();
    if (now - entry.persistedAt < this.#persistMs) return;
    entry.persistedAt = now;
    const updated = await this.store.updateSession(sessionId, { progress: entry.progress });
    // Gone from the store (its watcher was deleted): stop remembering it.
    if (!updated) this.#progress.delete(sessionId);
  }

  async #audit(
    caller: Caller,
    action: string,
    session: SessionRecord,
    detail: Record<string, unknown>,
  ): Promise<void> {
    await this.store.appendAudit({
      id: randomUUID(),
      subscriptionId: session.subscriptionId,
      at: this.#now(),
      actor: caller.actor,
      action,
      resourceId: captureResourceId(
        session.subscriptionId,
        session.resourceGroup,
        session.watcherName,
        session.name,
      ),
      sourceIp: caller.sourceIp,
      detail,
    });
  }

  /**
   * Creates `NetworkWatcher_{location}` in `NetworkWatcherRG` when the subscription has no
   * watcher in the location and none of that name (an operator may have put it elsewhere).
   * An existing watcher is never changed: its location, tags and etag are its owner's.
   */
  async ensureWatcherFor(subscriptionId: string, location: string): Promise<void> {
    if (await this.store.findWatcherByLocation(subscriptionId, location)) return;
    await this.store.createWatcherIfAbsent({
      subscriptionId,
      resourceGroup: 'NetworkWatcherRG',
      name: `NetworkWatcher_${location}`,
      location,
      tags: {},
      etag: randomUUID(),
      createdAt: this.#now(),
    });
  }

  watcherId(w: NetworkWatcherRecord): string {
    return watcherResourceId(w.subscriptionId, w.resourceGroup, w.name);
  }
}

/** How long one slice of a `hello` reconciliation may run before it yields to the event loop. */
const HELLO_SLICE_MS = 10;

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Maps with at most `limit` calls in flight; results in input order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function notFound(ref: CaptureRef): WirewatchError {
  return new WirewatchError(
    'ResourceNotFound',
    `Packet capture '${ref.name}' was not found under network watcher '${ref.watcherName}' in resource group '${ref.resourceGroup}'`,
    { target: 'packetCaptureName' },
  );
}

function toProgress(p: {
  packets: number;
  bytes: number;
  kernelDrops: number;
  at: string;
}): SessionProgress {
  return { packets: p.packets, bytes: p.bytes, kernelDrops: p.kernelDrops, at: new Date(p.at) };
}

interface StorageLocation {
  storageId?: string;
  storagePath?: string;
  filePath?: string;
  localPath?: string;
}

function storageLocationOf(session: SessionRecord): StorageLocation {
  return (session.properties as { storageLocation?: StorageLocation }).storageLocation ?? {};
}

/** The blob name inside the capture container of a URL of this account. */
function blobNameOf(account: StorageAccountRecord, url: string): string {
  const name = blobNameOfUrl(account.blobEndpoint, url);
  if (name === undefined) {
    throw new Error(`blob URL ${url} is not in the capture container of ${account.blobEndpoint}`);
  }
  return name;
}

function toRequestReason(reason: SessionStopReason | null): StopRequestReason {
  return reason === 'TargetDeleted' || reason === 'TimeExceeded' ? reason : 'ManualIntervention';
}

function isContinuous(session: SessionRecord): boolean {
  return (session.properties as { continuousCapture?: boolean }).continuousCapture === true;
}

/**
 * How far a ring's SAS grants may go (see Store.grantRingFile). The agent asks for its files in
 * order, one at a time, each when it is finished: the next number is the highest granted plus
 * one (or one granted before, asked again). The window of the ring's fileCount leaves room for
 * an agent that lost a few files before asking (a ring keeps at most fileCount files, and a
 * restarted agent uploads those it still has); a number further ahead is no file of this ring
 * yet. Numbers keep growing over a long capture, so they are bounded relative to the highest
 * granted, not absolutely; how many may be granted at all is bounded by what one upload report
 * can list (MAX_UPLOAD_BLOBS).
 */
function ringGrantBounds(session: SessionRecord): { window: number; maxGrants: number } {
  const fileCount = (session.properties as { captureSettings?: { fileCount?: unknown } })
    .captureSettings?.fileCount;
  const window =
    typeof fileCount === 'number' && Number.isSafeInteger(fileCount) && fileCount > 0
      ? fileCount
      : 10;
  return { window, maxGrants: MAX_UPLOAD_BLOBS };
}

/**
 * The stop time to record: a capture stopped by its time limit ended at its deadline (start +
 * limit), as the agent reports it, even when a stop came later (the backstop's, or a report
 * from an agent that ran late); it holds nothing stamped after it.
 */
function stopTimeOf(
  session: SessionRecord,
  reason: SessionStopReason,
  at: Date,
  start: Date | null | undefined = session.captureStartTime,
): Date {
  if (reason !== 'TimeExceeded' || !start) return at;
  const deadline = start.getTime() + timeLimitOf(session) * 1000;
  return at.getTime() > deadline ? new Date(deadline) : at;
}

function timeLimitOf(session: SessionRecord): number {
  const p = session.properties as {
    timeLimitInSeconds?: number;
    continuousCapture?: boolean;
    captureSettings?: { sessionTimeLimitInSeconds?: number };
  };
  if (p.continuousCapture === true) {
    const s = p.captureSettings?.sessionTimeLimitInSeconds ?? 86400;
    const t = p.timeLimitInSeconds;
    return Math.min(s === 0 ? 604800 : s, t === undefined ? Infinity : t === 0 ? 18000 : t);
  }
  const t = p.timeLimitInSeconds ?? 18000;
  return t === 0 ? 18000 : t;
}

/**
 * The file a single-file session has once its agent says it started: the agent starts only after
 * it created the planned file itself (exclusively), so that file is the session's own. A ring's
 * files are recorded as the agent reports them at its end.
 */
function startedFiles(session: SessionRecord, captureRoot: string): { files?: string[] } {
  if (session.files.length > 0 || session.properties['continuousCapture'] === true) return {};
  return { files: [plannedCapturePath(session, captureRoot)] };
}

/**
 * What the agent is told to run; limits resolved from the stored properties, the file where the
 * plan puts it under the VM's capture root.
 */
export function assignmentOf(session: SessionRecord, captureRoot: string): CaptureAssignment {
  const p = session.properties as unknown as PacketCaptureBody['properties'];
  const parsed = parseCaptureBody({ properties: p });
  return {
    sessionId: session.id,
    resourceId: captureResourceId(
      session.subscriptionId,
      session.resourceGroup,
      session.watcherName,
      session.name,
    ),
    filePath: plannedCapturePath(session, captureRoot),
    filters: parsed.filters,
    ...parsed.limits,
    createdAt: session.createdAt.toISOString(),
    ...(parsed.includeOwnTraffic ? { includeOwnTraffic: true } : {}),
  };
}
