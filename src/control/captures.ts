import { randomUUID } from 'node:crypto';
import type { PacketCaptureInput } from '../model/arm.js';
import { resolveCapture, type CaptureProperties } from '../model/capture-settings.js';
import type { StopRequestReason } from '../model/stop-reason.js';
import { WirewatchError } from '../model/errors.js';
import type {
  OperationKind,
  OperationRecord,
  Page,
  PageRequest,
  SessionRecord,
  SessionStatus,
  StorageAccountRecord,
  VmRecord,
} from '../store/store.js';
import { captureBlobName } from '../blob/blob-names.js';
import { sendStart } from './assignment.js';
import { auditCapture } from './audit.js';
import type { BlobGrants } from './blob-grants.js';
import { canonicalJson, parseCaptureBody, withoutStoragePath } from './capture-parameters.js';
import type { Caller, CaptureRef, ControlContext } from './control-context.js';
import type { CaptureOperations } from './operations.js';
import { vmResourceId } from './resource-ids.js';
import { plannedCapturePath } from './session-files.js';
import { finishSession, forgetSession, isActive, type SessionMemory } from './session-end.js';
import { findStorageAccount } from './storage-accounts.js';
import type { NetworkWatchers } from './watchers.js';

export interface CapturesOptions {
  readonly memory: SessionMemory;
  readonly operations: CaptureOperations;
  readonly grants: BlobGrants;
  readonly watchers: NetworkWatchers;
  /** Sessions NotStarted or Running per (subscription, location). */
  readonly quota: number;
}

/** Packet captures as the API sees them: create (with quota and targets), get, stop, delete. */
export class Captures {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;
  readonly #operations: CaptureOperations;
  readonly #grants: BlobGrants;
  readonly #watchers: NetworkWatchers;
  readonly #quota: number;
  /** Last blob-name time used per VM, so two captures of one VM never share a blob. */
  readonly #lastBlobTime = new Map<string, number>();

  constructor(ctx: ControlContext, options: CapturesOptions) {
    this.#ctx = ctx;
    this.#memory = options.memory;
    this.#operations = options.operations;
    this.#grants = options.grants;
    this.#watchers = options.watchers;
    this.#quota = options.quota;
  }

  /**
   * PUT of a packet capture. 'exists' is an idempotent re-PUT (same body); a different body
   * for an existing name is a 409.
   */
  async create(
    ref: CaptureRef,
    body: PacketCaptureInput,
    caller: Caller,
  ): Promise<{ kind: 'created' | 'exists'; session: SessionRecord; operation?: OperationRecord }> {
    const watcher = await this.#watchers.require(
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
    const now = this.#ctx.now();
    let properties: CaptureProperties = parsed.properties;
    let upload: SessionRecord['upload'] = null;
    const storageAccount = parsed.capture.storage.account;
    if (storageAccount) {
      const account = await this.#findStorageAccount(ref.subscriptionId, storageAccount);
      const blobName = captureBlobName({
        subscriptionId: ref.subscriptionId,
        resourceGroup: vm.resourceGroup,
        vmName: vm.name,
        createdAt: this.#blobTime(vm.id, now),
      });
      properties = {
        ...properties,
        storageLocation: {
          ...properties.storageLocation,
          storagePath: this.#grants.writer(account).blobUrl(blobName),
        },
      };
      upload = { state: 'Pending', blobs: [], error: null };
    }
    const record: SessionRecord = {
      id,
      subscriptionId: ref.subscriptionId,
      resourceGroup: watcher.resourceGroup,
      watcherName: watcher.name,
      name: ref.name,
      location: watcher.location,
      vmId: vm.id,
      parentId: null,
      instanceId: null,
      properties,
      capture: resolveCapture(properties),
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
    // The file asked for must be under the VM's capture root (checked before anything is stored).
    // Without one, the agent spools under its capture root and deletes the spool once the blob
    // is committed.
    const filePath = plannedCapturePath(record, vm.captureRoot);
    const result = await this.#ctx.store.createSession(record, this.#quota);
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
        const operation = await this.#operations.open('create', result.session);
        await auditCapture(this.#ctx, caller, 'packetCapture.create', result.session, {
          target: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name),
          filePath,
        });
        await sendStart(this.#ctx, this.#grants, result.session, vm);
        await this.#operations.settle(result.session.id);
        return { kind: 'created', session: result.session, operation };
      }
    }
  }

  async #findTargetVm(
    subscriptionId: string,
    target: { subscriptionId: string; resourceGroup: string; name: string },
  ): Promise<VmRecord> {
    // Another subscription's VM reads exactly like a VM that does not exist; so does a
    // scale-set instance, which is no VM resource in Azure (…/virtualMachineScaleSets/…).
    const vm =
      target.subscriptionId.toLowerCase() === subscriptionId.toLowerCase()
        ? await this.#ctx.store.getVm(subscriptionId, target.resourceGroup, target.name)
        : undefined;
    if (!vm || vm.scaleSet !== null) {
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
    const account = await findStorageAccount(this.#ctx, subscriptionId, ref);
    if (!account) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        `properties.storageLocation.storageId: no storage account '${ref.name}' is registered in resource group '${ref.resourceGroup}' of this subscription (POST /api/v1/subscriptions/{s}/storageAccounts)`,
        { target: 'properties.storageLocation.storageId' },
      );
    }
    return account;
  }

  /** The creation time a blob name is built from: unique per VM to the millisecond. */
  #blobTime(vmId: string, now: Date): Date {
    const last = this.#lastBlobTime.get(vmId) ?? 0;
    const t = Math.max(now.getTime(), last + 1);
    this.#lastBlobTime.set(vmId, t);
    return new Date(t);
  }

  async get(ref: CaptureRef): Promise<SessionRecord> {
    const session = await this.#ctx.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) throw notFound(ref);
    return this.#memory.progress.withLive(session);
  }

  /** A page of the watcher's captures as stored (live progress is the caller's to add). */
  list(ref: Omit<CaptureRef, 'name'>, page: PageRequest): Promise<Page<SessionRecord>> {
    return this.#ctx.store.listSessions(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      page,
    );
  }

  /** Captures per status, across all tenants (for /metrics). */
  countByStatus(): Promise<Record<SessionStatus, number>> {
    return this.#ctx.store.countSessionsByStatus();
  }

  /** POST …/stop: undefined operation when the capture had already ended (200). */
  async stop(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    const session = await this.get(ref);
    await auditCapture(this.#ctx, caller, 'packetCapture.stop', session, {
      status: session.status,
    });
    if (!isActive(session.status)) return { session };
    return this.#requestStop(session, 'ManualIntervention', 'stop');
  }

  /** DELETE: 'gone' when there was nothing (204), 'deleted' when removed at once (204). */
  async delete(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ kind: 'gone' | 'deleted' } | { kind: 'pending'; operation: OperationRecord }> {
    const { store } = this.#ctx;
    const session = await store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) return { kind: 'gone' };
    await auditCapture(this.#ctx, caller, 'packetCapture.delete', session, {
      status: session.status,
    });
    if (!isActive(session.status)) {
      await forgetSession(this.#ctx, this.#memory, session.id);
      return { kind: 'deleted' };
    }
    await store.updateSession(session.id, { deleteRequested: true });
    const { operation } = await this.#requestStop(session, 'ManualIntervention', 'delete');
    return { kind: 'pending', operation: operation! };
  }

  async #requestStop(
    session: SessionRecord,
    reason: StopRequestReason,
    kind: OperationKind,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    const { store, agents } = this.#ctx;
    let updated: SessionRecord | undefined;
    if (session.status === 'NotStarted' && !agents.isConnected(session.vmId)) {
      // The agent never got it: end it here. If the agent did start it after all, the next
      // hello reports it and reconciliation stops it.
      updated = await finishSession(this.#ctx, this.#memory, session, {
        stopReason: reason,
        status: 'Stopped',
      });
    } else {
      updated = await store.updateSession(session.id, { stopRequested: reason });
      agents.send(session.vmId, { type: 'stop', sessionId: session.id, reason });
    }
    const operation = await this.#operations.open(kind, updated ?? session);
    await this.#operations.settle(session.id);
    return { session: updated ?? session, operation };
  }
}

function notFound(ref: CaptureRef): WirewatchError {
  return new WirewatchError(
    'ResourceNotFound',
    `Packet capture '${ref.name}' was not found under network watcher '${ref.watcherName}' in resource group '${ref.resourceGroup}'`,
    { target: 'packetCaptureName' },
  );
}
