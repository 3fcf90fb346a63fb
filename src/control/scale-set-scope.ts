import type { CaptureScope } from '../model/capture-settings.js';
import { WirewatchError } from '../model/errors.js';
import type { ResourceIdParts } from '../model/resource-id.js';
import { compareInstanceIds, isInstanceId } from '../model/scale-set.js';
import { clip } from './capture-parameters.js';

/**
 * A scale-set capture's scope (Azure's PacketCaptureMachineScope) read against the scale set:
 * each entry an instance id ("0") or an instance's resource id
 * (`…/virtualMachineScaleSets/{ss}/virtualMachines/{id}`), compared without regard to case.
 */

const INSTANCE_RESOURCE_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachineScaleSets\/([^/]+)\/virtualMachines\/([^/]+)\/?$/i;

const SCOPE = 'properties.scope';

/**
 * The instance id a scope entry names: an instance id as Azure writes one, or the resource id
 * of an instance of this scale set; undefined when it is neither.
 */
export function scopeEntryInstanceId(entry: string, scaleSet: ResourceIdParts): string | undefined {
  if (isInstanceId(entry)) return entry;
  const [, subscriptionId, resourceGroup, name, instanceId] =
    INSTANCE_RESOURCE_ID.exec(entry) ?? [];
  if (
    subscriptionId?.toLowerCase() !== scaleSet.subscriptionId.toLowerCase() ||
    resourceGroup?.toLowerCase() !== scaleSet.resourceGroup.toLowerCase() ||
    name?.toLowerCase() !== scaleSet.name.toLowerCase() ||
    instanceId === undefined ||
    !isInstanceId(instanceId)
  ) {
    return undefined;
  }
  return instanceId;
}

/**
 * The instances a scope selects among the scale set's (`instanceIds`): the included ones (every
 * one when `include` is empty) less the excluded ones, by instance id as a number. InvalidScope,
 * naming the entry (`properties.scope.include[1]`), when an entry names no instance of the set
 * or an instance is both included and excluded; naming `properties.scope` when none is selected.
 */
export function selectInstances(
  scope: CaptureScope,
  instanceIds: readonly string[],
  scaleSet: ResourceIdParts,
): string[] {
  const known = new Set(instanceIds);
  const resolve = (field: 'include' | 'exclude'): string[] =>
    scope[field].map((entry, i) => {
      const id = scopeEntryInstanceId(entry, scaleSet);
      if (id !== undefined && known.has(id)) return id;
      throw new WirewatchError(
        'InvalidScope',
        `${SCOPE}.${field}[${i}]: "${clip(entry)}" names no instance of virtual machine scale set '${scaleSet.name}' (give an instance id such as "0", or an instance's id …/virtualMachineScaleSets/${scaleSet.name}/virtualMachines/{instanceId}); its instances: ${listed(instanceIds)}`,
        { target: `${SCOPE}.${field}[${i}]` },
      );
    });
  const include = new Set(resolve('include'));
  const exclude = resolve('exclude');
  const both = exclude.findIndex((id) => include.has(id));
  if (both !== -1) {
    throw new WirewatchError(
      'InvalidScope',
      `${SCOPE}.exclude[${both}]: instance '${exclude[both]}' is also included; an instance is either included or excluded`,
      { target: `${SCOPE}.exclude[${both}]` },
    );
  }
  const excluded = new Set(exclude);
  const selected = [...(include.size > 0 ? include : known)].filter((id) => !excluded.has(id));
  if (selected.length === 0) {
    throw new WirewatchError(
      'InvalidScope',
      `${SCOPE}: selects no instance of virtual machine scale set '${scaleSet.name}' (its instances: ${listed(instanceIds)})`,
      { target: SCOPE },
    );
  }
  return selected.sort(compareInstanceIds);
}

/**
 * Whether an instance that was not selected at create (it enrolled or came back later) joins a
 * capture: only when the scope includes no instance explicitly, and does not exclude this one.
 */
export function admitsLateInstance(
  scope: CaptureScope,
  instanceId: string,
  scaleSet: ResourceIdParts,
): boolean {
  if (scope.include.length > 0) return false;
  return !scope.exclude.some((entry) => scopeEntryInstanceId(entry, scaleSet) === instanceId);
}

function listed(ids: readonly string[]): string {
  const shown = ids.slice(0, 20).join(', ');
  return ids.length > 20 ? `${shown}, … (${ids.length} in all)` : shown || 'none';
}
