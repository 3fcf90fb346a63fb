import type { CaptureProperties } from '../model/capture-settings.js';
import { WirewatchError } from '../model/errors.js';
import { parseResourceId, type ResourceIdParts } from '../model/resource-id.js';
import { compareInstanceIds, instanceVmName, scaleSetKey } from '../model/scale-set.js';
import type { StopRequestReason } from '../model/stop-reason.js';
import type { SessionRecord, StorageAccountRecord, VmRecord } from '../store/store.js';
import { sendStart } from './assignment.js';
import type { BlobGrants } from './blob-grants.js';
import {
  newArmSession,
  newSession,
  withStoragePath,
  withTimeLeft,
  type CapturePlan,
  type PlanInput,
} from './capture-plan.js';
import type { ControlContext } from './control-context.js';
import type { CaptureOperations } from './operations.js';
import { hostResourceId, scaleSetResourceId } from './resource-ids.js';
import { admitsLateInstance, selectInstances } from './scale-set-scope.js';
import { isScaleSetParent, summedProgress } from './scale-set-status.js';
import { ACTIVE, isActive, type SessionMemory } from './session-end.js';
import { plannedCapturePath } from './session-files.js';
import { captureStorageAccount } from './storage-accounts.js';

const SCALE_SETS = 'Microsoft.Compute/virtualMachineScaleSets';

/** One instance of a scale-set capture: its id, its VM name (`{ss}_{id}`) and its child session. */
export interface InstanceSession {
  readonly instanceId: string;
  readonly vmName: string;
  /** The child session, with the live progress held for it. */
  readonly session: SessionRecord;
}

/** Asks one session to stop (the per-session stop path of captures.ts); opens its operation. */
export type StopSession = (session: SessionRecord, reason: StopRequestReason) => Promise<void>;

export interface ScaleSetCapturesOptions {
  readonly memory: SessionMemory;
  readonly operations: CaptureOperations;
  readonly grants: BlobGrants;
}

/**
 * Captures on scale sets (issue 11). One parent session is the ARM resource (`targetType`
 * AzureVMSS, `target` the scale set, `scope` as given; its `vmId` the scale set's key); each
 * selected instance runs a child session, an ordinary session of that instance's VM named
 * `{parentName}/{instanceId}`, which the agents' side (assignment, reconciliation, deadlines,
 * blob grants, uploads, files) runs as any other: the agent never knows it is a child. Each child
 * has operations of its own (never shown), so an instance whose agent does not answer fails or
 * is forced alone; the parent's status is the children's aggregate (scale-set-status.ts),
 * recomputed as each child settles, and its operations complete from it.
 */
export class ScaleSetCaptures {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;
  readonly #operations: CaptureOperations;
  readonly #grants: BlobGrants;

  constructor(ctx: ControlContext, options: ScaleSetCapturesOptions) {
    this.#ctx = ctx;
    this.#memory = options.memory;
    this.#operations = options.operations;
    this.#grants = options.grants;
  }

  /**
   * Plans a scale-set capture: the scale set must have instances (in the watcher's location),
   * the scope must select some, and the file asked for must be under each selected instance's
   * capture root — all checked before anything is stored. Starting it creates the children.
   */
  async plan(input: PlanInput, target: ResourceIdParts): Promise<CapturePlan> {
    const { ref, watcher, parsed, account, now } = input;
    const { store } = this.#ctx;
    // Another subscription's scale set reads exactly like one that does not exist.
    const instances =
      target.subscriptionId.toLowerCase() === ref.subscriptionId.toLowerCase()
        ? await store.listScaleSetInstances(
            ref.subscriptionId.toLowerCase(),
            target.resourceGroup,
            target.name,
          )
        : [];
    const first = instances[0];
    if (!first?.scaleSet) {
      throw new WirewatchError(
        'InvalidTarget',
        `properties.target: no virtual machine scale set '${target.name}' with an enrolled instance exists in resource group '${target.resourceGroup}' of this subscription`,
        { target: 'properties.target' },
      );
    }
    if (first.location !== watcher.location) {
      throw new WirewatchError(
        'TargetNotInNetworkWatcherLocation',
        `properties.target: virtual machine scale set '${first.scaleSet}' is in location '${first.location}' but network watcher '${watcher.name}' is in '${watcher.location}'; use the network watcher of '${first.location}'`,
        { target: 'properties.target' },
      );
    }
    const scope =
      parsed.capture.target.type === 'AzureVMSS'
        ? parsed.capture.target.scope
        : { include: [], exclude: [] };
    const selected = new Set(selectInstances(scope, instances.map(instanceIdOf), target));
    const record = newArmSession(
      input,
      scaleSetKey(first.subscriptionId, first.resourceGroup, first.scaleSet),
      parsed.properties,
    );
    const children = instances
      .filter((vm) => selected.has(instanceIdOf(vm)))
      .map((vm) => {
        const child = this.#child(record, vm, account, now, undefined);
        // Checked for every instance before anything is stored (InvalidCapturePath).
        plannedCapturePath(child, vm.captureRoot);
        return { child, vm };
      });
    return {
      record,
      audit: {
        target: scaleSetResourceId(first.subscriptionId, first.resourceGroup, first.scaleSet),
        instances: children.map(({ vm }) => instanceIdOf(vm)),
      },
      start: async () => {
        for (const { child, vm } of children) await this.#startChild(child, vm);
      },
    };
  }

  /**
   * An instance enrolled or (re)connected: it joins each live capture of its scale set whose
   * scope admits a newcomer (no explicit include, not excluded) and that has no child for it,
   * for the time the capture has left.
   */
  async admit(vm: VmRecord): Promise<void> {
    if (vm.scaleSet === null || vm.instanceId === null) return;
    const { store, log } = this.#ctx;
    const key = scaleSetKey(vm.subscriptionId, vm.resourceGroup, vm.scaleSet);
    for (const parent of await store.listSessionsByVm(key, ACTIVE)) {
      const target = parent.capture.target;
      const scaleSet = parseResourceId(target.id, SCALE_SETS);
      if (
        target.type !== 'AzureVMSS' ||
        !scaleSet ||
        parent.stopRequested !== null ||
        parent.deleteRequested ||
        !admitsLateInstance(target.scope, vm.instanceId, scaleSet)
      ) {
        continue;
      }
      const children = await store.listChildSessions(parent.id);
      if (children.some((c) => c.instanceId === vm.instanceId)) continue;
      const left = this.#secondsLeft(parent);
      if (left !== undefined && left < 1) continue;
      try {
        const account = await captureStorageAccount(this.#ctx, parent);
        const child = this.#child(parent, vm, account, this.#ctx.now(), left);
        plannedCapturePath(child, vm.captureRoot);
        await this.#startChild(child, vm);
      } catch (err) {
        // Its capture root does not hold the file asked for, or its storage account is gone:
        // this instance sits the capture out; the others carry on.
        log('warn', 'a late instance could not join a scale-set capture', {
          sessionId: parent.id,
          instanceId: vm.instanceId,
          err: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  /**
   * Stops every live child of a parent through `stopSession` (each with an operation of its
   * own, so an instance that does not answer is forced alone), after recording the parent's
   * own request.
   */
  async requestStop(
    parent: SessionRecord,
    reason: StopRequestReason,
    stopSession: StopSession,
  ): Promise<SessionRecord> {
    const { store } = this.#ctx;
    const updated = await store.updateSession(parent.id, { stopRequested: reason });
    for (const child of await store.listChildSessions(parent.id)) {
      if (isActive(child.status)) await stopSession(child, reason);
    }
    return (await store.getSessionById(parent.id)) ?? updated ?? parent;
  }

  /**
   * A parent with its children's live progress summed; any other session as it is (with its
   * own live progress).
   */
  async withLiveProgress(session: SessionRecord): Promise<SessionRecord> {
    if (!isScaleSetParent(session)) return this.#memory.progress.withLive(session);
    const children = await this.#ctx.store.listChildSessions(session.id);
    return {
      ...session,
      progress: summedProgress(children.map((c) => this.#memory.progress.withLive(c))),
    };
  }

  /**
   * A scale-set capture's instances, by instance id as a number; empty for any other capture.
   */
  async instanceSessions(parent: SessionRecord): Promise<InstanceSession[]> {
    if (!isScaleSetParent(parent)) return [];
    const { store } = this.#ctx;
    const target = parseResourceId(parent.properties.target, SCALE_SETS);
    // Names as the instances enrolled them (`web_0`); an instance deleted since, as the target
    // spells its scale set.
    const enrolled = new Map(
      (target
        ? await store.listScaleSetInstances(
            parent.subscriptionId.toLowerCase(),
            target.resourceGroup,
            target.name,
          )
        : []
      ).map((vm) => [vm.id, vm.name]),
    );
    const children = await store.listChildSessions(parent.id);
    return children
      .flatMap((child) =>
        child.instanceId === null
          ? []
          : [
              {
                instanceId: child.instanceId,
                vmName:
                  enrolled.get(child.vmId) ?? instanceVmName(target?.name ?? '', child.instanceId),
                session: this.#memory.progress.withLive(child),
              },
            ],
      )
      .sort((a, b) => compareInstanceIds(a.instanceId, b.instanceId));
  }

  /**
   * A parent's child for instance `vm`: the parent's settings on that VM alone (no scope), its
   * own blob, and for a late joiner the time the capture has left (`seconds`).
   */
  #child(
    parent: SessionRecord,
    vm: VmRecord,
    account: StorageAccountRecord | undefined,
    now: Date,
    seconds: number | undefined,
  ): SessionRecord {
    const { targetType: _type, scope: _scope, ...settings } = parent.properties;
    let properties: CaptureProperties = { ...settings, target: hostResourceId(vm) };
    if (seconds !== undefined) properties = withTimeLeft(properties, seconds);
    if (account) {
      properties = withStoragePath(properties, this.#grants.captureBlobUrl(account, vm, now));
    }
    return newSession(
      {
        subscriptionId: parent.subscriptionId,
        resourceGroup: parent.resourceGroup,
        watcherName: parent.watcherName,
        name: `${parent.name}/${instanceIdOf(vm)}`,
        location: parent.location,
        vmId: vm.id,
        parentId: parent.id,
        instanceId: instanceIdOf(vm),
        properties,
      },
      now,
    );
  }

  /** Stores a child (never counted by the quota), opens its create operation, sends its start. */
  async #startChild(child: SessionRecord, vm: VmRecord): Promise<void> {
    const result = await this.#ctx.store.createSession(child, Number.MAX_SAFE_INTEGER);
    if (result.kind !== 'created') return;
    await this.#operations.open('create', result.session);
    await sendStart(this.#ctx, this.#grants, result.session, vm);
    await this.#operations.settle(result.session.id);
  }

  /**
   * Whole seconds a running parent has left (its deadline is its first child's start plus its
   * duration); undefined while no child has started (a joiner then gets the whole duration).
   */
  #secondsLeft(parent: SessionRecord): number | undefined {
    if (!parent.captureStartTime) return undefined;
    const deadline = parent.captureStartTime.getTime() + parent.capture.durationSeconds * 1000;
    return Math.floor((deadline - this.#ctx.now().getTime()) / 1000);
  }
}

function instanceIdOf(vm: VmRecord): string {
  return vm.instanceId ?? '';
}
