import { WirewatchError } from '../model/errors.js';
import { compareInstanceIds, instanceVmName, isInstanceId } from '../model/scale-set.js';
import { foldName } from '../store/migrations/schema.js';
import type { VmRecord } from '../store/store.js';
import type { AgentReconciler } from './agent-reconciliation.js';
import type { Caller, ControlContext } from './control-context.js';

/**
 * A scale set as the API shows it: it exists while it has instances (agents that enrolled with
 * `--scale-set`), and its location is theirs (the store keeps one location per scale set).
 */
export interface ScaleSet {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  /** As its first instance spelled it. */
  readonly name: string;
  readonly location: string;
  /** Its instances, by instance id as a number. */
  readonly instances: readonly VmRecord[];
}

/** Where a scale set is: its subscription, resource group and name. */
export interface ScaleSetRef {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly scaleSet: string;
}

/** Where a plain VM is. */
export interface VmNameRef {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
}

/**
 * The hosts agents enrolled, read and deregistered the ARM way: plain VMs
 * (Microsoft.Compute/virtualMachines) and scale sets with their instances
 * (Microsoft.Compute/virtualMachineScaleSets/…/virtualMachines). As in Azure, a uniform scale
 * set's instances are not in the VM list and cannot be read as VMs; the native agent list has
 * every host. Deleting either deregisters the agent (AgentReconciler.deleteVm): its captures stop
 * with TargetDeleted and its credential stops working. Subscription ids are folded here.
 */
export class Hosts {
  readonly #ctx: ControlContext;
  readonly #reconciler: AgentReconciler;

  constructor(ctx: ControlContext, reconciler: AgentReconciler) {
    this.#ctx = ctx;
    this.#reconciler = reconciler;
  }

  isConnected(vmId: string): boolean {
    return this.#ctx.agents.isConnected(vmId);
  }

  /** Every host of the subscription, VMs and instances, for the native agent list. */
  listAgents(subscriptionId: string): Promise<VmRecord[]> {
    return this.#ctx.store.listVms(subscriptionId.toLowerCase());
  }

  /** The plain VMs of a subscription, or of one resource group. */
  async listVms(subscriptionId: string, resourceGroup?: string): Promise<VmRecord[]> {
    const all = await this.#ctx.store.listVms(subscriptionId.toLowerCase(), resourceGroup);
    return all.filter((vm) => vm.scaleSet === null);
  }

  /** A plain VM; ResourceNotFound (naming `vmName`) when there is none of that name. */
  async getVm(ref: VmNameRef): Promise<VmRecord> {
    const vm = await this.#findVm(ref);
    if (!vm) {
      throw new WirewatchError(
        'ResourceNotFound',
        `Virtual machine '${ref.name}' was not found in resource group '${ref.resourceGroup}'`,
        { target: 'vmName' },
      );
    }
    return vm;
  }

  /** Deregisters a plain VM; the record deleted, or undefined when there was none. */
  async deleteVm(ref: VmNameRef, caller: Caller): Promise<VmRecord | undefined> {
    const vm = await this.#findVm(ref);
    if (vm) await this.#reconciler.deleteVm(vm, caller);
    return vm;
  }

  /** The scale sets of a subscription, or of one resource group, by resource group and name. */
  async listScaleSets(subscriptionId: string, resourceGroup?: string): Promise<ScaleSet[]> {
    const all = await this.#ctx.store.listVms(subscriptionId.toLowerCase(), resourceGroup);
    const sets = new Map<string, VmRecord[]>();
    for (const vm of all) {
      if (vm.scaleSet === null) continue;
      const key = `${foldName(vm.resourceGroup)}/${foldName(vm.scaleSet)}`;
      sets.set(key, [...(sets.get(key) ?? []), vm]);
    }
    return [...sets.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, instances]) =>
        scaleSetOf(instances.sort((a, b) => compareInstanceIds(a.instanceId!, b.instanceId!))),
      );
  }

  /** A scale set; ResourceNotFound (naming `vmScaleSetName`) when it has no instance. */
  async getScaleSet(ref: ScaleSetRef): Promise<ScaleSet> {
    const instances = await this.#ctx.store.listScaleSetInstances(
      ref.subscriptionId.toLowerCase(),
      ref.resourceGroup,
      ref.scaleSet,
    );
    if (instances.length === 0) {
      throw new WirewatchError(
        'ResourceNotFound',
        `Virtual machine scale set '${ref.scaleSet}' was not found in resource group '${ref.resourceGroup}'`,
        { target: 'vmScaleSetName' },
      );
    }
    return scaleSetOf(instances);
  }

  /** An instance of a scale set; ResourceNotFound (naming `instanceId`) when there is none. */
  async getInstance(ref: ScaleSetRef, instanceId: string): Promise<VmRecord> {
    const vm = await this.#findInstance(ref, instanceId);
    if (!vm) {
      // Azure answers for the scale set first: a missing set is not a missing instance.
      await this.getScaleSet(ref);
      throw new WirewatchError(
        'ResourceNotFound',
        `Instance '${instanceId}' of virtual machine scale set '${ref.scaleSet}' was not found in resource group '${ref.resourceGroup}'`,
        { target: 'instanceId' },
      );
    }
    return vm;
  }

  /** Deregisters an instance as deleting a VM does; undefined when there was none. */
  async deleteInstance(
    ref: ScaleSetRef,
    instanceId: string,
    caller: Caller,
  ): Promise<VmRecord | undefined> {
    const vm = await this.#findInstance(ref, instanceId);
    if (vm) await this.#reconciler.deleteVm(vm, caller);
    return vm;
  }

  async #findVm(ref: VmNameRef): Promise<VmRecord | undefined> {
    const vm = await this.#ctx.store.getVm(
      ref.subscriptionId.toLowerCase(),
      ref.resourceGroup,
      ref.name,
    );
    return vm?.scaleSet === null ? vm : undefined;
  }

  async #findInstance(ref: ScaleSetRef, instanceId: string): Promise<VmRecord | undefined> {
    // Anything but a canonical id ("01", "x") names no instance.
    if (!isInstanceId(instanceId)) return undefined;
    const vm = await this.#ctx.store.getVm(
      ref.subscriptionId.toLowerCase(),
      ref.resourceGroup,
      instanceVmName(ref.scaleSet, instanceId),
    );
    return vm?.scaleSet != null && foldName(vm.scaleSet) === foldName(ref.scaleSet)
      ? vm
      : undefined;
  }
}

/** A scale set from its instances (at least one, all of one scale set). */
function scaleSetOf(instances: readonly VmRecord[]): ScaleSet {
  const first = instances[0]!;
  return {
    subscriptionId: first.subscriptionId,
    resourceGroup: first.resourceGroup,
    name: first.scaleSet ?? first.name,
    location: first.location,
    instances,
  };
}
