import { WirewatchError } from '../model/errors.js';
import { parseResourceId, type ResourceIdParts } from '../model/resource-id.js';

/**
 * ARM resource ids and names. Azure compares names case-insensitively and keeps the casing a
 * resource was created with; so does wirewatch (the store folds case on lookup).
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Azure's rule for most resource names: 1–80 characters, letters, digits, `_`, `.`, `-`. */
const RESOURCE_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$/;
/** Azure's rule for resource group names. */
const RESOURCE_GROUP = /^[-\w.()]{0,89}[-\w()]$/;
/** Azure region names as ARM spells them: `westeurope`, `eastus2`. */
const LOCATION = /^[a-z0-9]{1,64}$/;

export function isUuid(text: string): boolean {
  return UUID.test(text);
}

export function checkResourceName(name: string, target: string): string {
  if (!RESOURCE_NAME.test(name)) {
    throw new WirewatchError(
      'InvalidResourceName',
      `${target}: "${truncate(name)}" is not a valid name: 1 to 80 letters, digits, '_', '.' or '-', starting with a letter or digit and ending with a letter, digit or '_'`,
      { target },
    );
  }
  return name;
}

export function checkResourceGroupName(name: string, target = 'resourceGroupName'): string {
  if (!RESOURCE_GROUP.test(name)) {
    throw new WirewatchError(
      'InvalidResourceName',
      `${target}: "${truncate(name)}" is not a valid resource group name: 1 to 90 letters, digits, '_', '-', '.', '(' or ')', not ending with '.'`,
      { target },
    );
  }
  return name;
}

/** Azure accepts "West Europe" and "westeurope" alike and stores the latter. */
export function normalizeLocation(location: unknown, target = 'location'): string {
  const folded = typeof location === 'string' ? location.replace(/\s+/g, '').toLowerCase() : '';
  if (!LOCATION.test(folded)) {
    throw new WirewatchError(
      'InvalidLocation',
      `${target}: ${JSON.stringify(location)} is not a location: a region name such as "westeurope"`,
      { target },
    );
  }
  return folded;
}

export function vmResourceId(subscriptionId: string, resourceGroup: string, name: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachines/${name}`;
}

export function scaleSetResourceId(
  subscriptionId: string,
  resourceGroup: string,
  scaleSet: string,
): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${scaleSet}`;
}

/** A host's ARM id: a plain VM's, or a scale-set instance's (…/virtualMachines/{instanceId}). */
export function hostResourceId(vm: {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  readonly scaleSet: string | null;
  readonly instanceId: string | null;
}): string {
  return vm.scaleSet === null || vm.instanceId === null
    ? vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name)
    : `${scaleSetResourceId(vm.subscriptionId, vm.resourceGroup, vm.scaleSet)}/virtualMachines/${vm.instanceId}`;
}

export function watcherResourceId(
  subscriptionId: string,
  resourceGroup: string,
  name: string,
): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Network/networkWatchers/${name}`;
}

export function captureResourceId(
  subscriptionId: string,
  resourceGroup: string,
  watcherName: string,
  name: string,
): string {
  return `${watcherResourceId(subscriptionId, resourceGroup, watcherName)}/packetCaptures/${name}`;
}

/** The ARM id of a stored capture. */
export function sessionResourceId(session: {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly watcherName: string;
  readonly name: string;
}): string {
  return captureResourceId(
    session.subscriptionId,
    session.resourceGroup,
    session.watcherName,
    session.name,
  );
}

export type VmRef = ResourceIdParts;

/** Parses a VM's ARM id; undefined when the text is not one. */
export function parseVmResourceId(id: string): VmRef | undefined {
  return parseResourceId(id, 'Microsoft.Compute/virtualMachines');
}

function truncate(text: string): string {
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}
