import type { PacketCaptureInput } from '../model/arm.js';
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
import { sendStart } from './assignment.js';
import { auditCapture } from './audit.js';
import type { BlobGrants } from './blob-grants.js';
import { canonicalJson, parseCaptureBody, withoutStoragePath } from './capture-parameters.js';
import {
  newArmSession,
  withStoragePath,
  type CapturePlan,
  type PlanInput,
} from './capture-plan.js';
import type { Caller, CaptureRef, ControlContext } from './control-context.js';
import type { CaptureOperations } from './operations.js';
import { vmResourceId, type VmRef } from './resource-ids.js';
import type { ScaleSetCaptures } from './scale-set-captures.js';
import { isScaleSetParent } from './scale-set-status.js';
import { plannedCapturePath } from './session-files.js';
import { finishSession, forgetSession, isActive, type SessionMemory } from './session-end.js';
import { findStorageAccount } from './storage-accounts.js';
import type { NetworkWatchers } from './watchers.js';

export interface CapturesOptions {
  readonly memory: SessionMemory;
  readonly operations: CaptureOperations;
  readonly grants: BlobGrants;
  readonly watchers: NetworkWatchers;
  readonly scaleSets: ScaleSetCaptures;
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
  readonly #scaleSets: ScaleSetCaptures;

  constructor(ctx: ControlContext, options: CapturesOptions) {
    this.#ctx = ctx;
    this.#memory = options.memory;
    this.#operations = options.operations;
    this.#grants = options.grants;
    this.#watchers = options.watchers;
    this.#quota = options.quota;
    this.#scaleSets = options.scaleSets;
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
    const storageAccount = parsed.capture.storage.account;
    const input: PlanInput = {
      ref,
      watcher,
      parsed,
      account: storageAccount
        ? await this.#findStorageAccount(ref.subscriptionId, storageAccount)
        : undefined,
      now: this.#ctx.now(),
    };
    const plan =
      parsed.target.type === 'AzureVM'
        ? await this.#planVm(input, parsed.target.vm)
        : await this.#scaleSets.plan(input, parsed.target.scaleSet);
    const result = await this.#ctx.store.createSession(plan.record, this.#quota);
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
        await auditCapture(this.#ctx, caller, 'packetCapture.create', result.session, plan.audit);
        await plan.start(result.session);
        await this.#operations.settle(result.session.id);
        return { kind: 'created', session: result.session, operation };
      }
    }
  }

  /** A capture of one VM: its session, the planned file checked against the VM's capture root. */
  async #planVm(input: PlanInput, target: VmRef): Promise<CapturePlan> {
    const { ref, watcher, parsed, account, now } = input;
    const vm = await this.#findTargetVm(ref.subscriptionId, target);
    if (vm.location !== watcher.location) {
      throw new WirewatchError(
        'TargetNotInNetworkWatcherLocation',
        `properties.target: VM '${vm.name}' is in location '${vm.location}' but network watcher '${watcher.name}' is in '${watcher.location}'; use the network watcher of '${vm.location}'`,
        { target: 'properties.target' },
      );
    }
    const properties = account
      ? withStoragePath(parsed.properties, this.#grants.captureBlobUrl(account, vm, now))
      : parsed.properties;
    const record = newArmSession(input, vm.id, properties);
    // The file asked for must be under the VM's capture root (checked before anything is
    // stored). Without one, the agent spools under its capture root and deletes the spool once
    // the blob is committed.
    const filePath = plannedCapturePath(record, vm.captureRoot);
    return {
      record,
      audit: { target: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name), filePath },
      start: (session) => sendStart(this.#ctx, this.#grants, session, vm),
    };
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

  async get(ref: CaptureRef): Promise<SessionRecord> {
    const session = await this.#ctx.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    // A scale-set capture's child is no ARM resource (its name cannot be one anyway).
    if (!session || session.parentId !== null) throw notFound(ref);
    return this.#scaleSets.withLiveProgress(session);
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
    if (!session || session.parentId !== null) return { kind: 'gone' };
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
    if (isScaleSetParent(session)) {
      // Every live instance is stopped as any capture is; the parent ends with the last.
      const parent = await this.#scaleSets.requestStop(session, reason, async (child, r) => {
        await this.#requestStop(child, r, 'stop');
      });
      const operation = await this.#operations.open(kind, parent);
      await this.#operations.settle(session.id);
      return { session: parent, operation };
    }
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
