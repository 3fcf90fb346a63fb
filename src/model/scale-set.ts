/**
 * Scale sets and their instances: the rules for a scale set's name and an instance id, and the
 * VM name an instance has (`{scaleSet}_{instanceId}`, as Azure names uniform scale-set VMs).
 * Shared by the agent (which checks its options before enrolling) and the control plane.
 */

/**
 * Azure's rule for a (Linux) scale set's name, in ASCII: 1 to 64 characters, none of
 * `~!@#$%^&*()=+_[]{}\|;:.'",<>/?`, not ending with `.` or `-`. Here: letters, digits and `-`,
 * starting and ending with a letter or digit. No `_`, so `{scaleSet}_{instanceId}` is unambiguous.
 */
const SCALE_SET_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$/;

/** An instance id as Azure writes one: a decimal number, without leading zeros. */
const INSTANCE_ID = /^(?:0|[1-9][0-9]{0,8})$/;

/** The longest instance id: 999999999. */
export const MAX_INSTANCE_ID = 999_999_999;

/** {@link isScaleSetName}'s rule in words, for error messages. */
export const SCALE_SET_NAME_RULE =
  "1 to 64 letters, digits or '-', starting and ending with a letter or digit";

/** {@link isInstanceId}'s rule in words, for error messages. */
export const INSTANCE_ID_RULE = 'digits only, 0 to 999999999, without a leading zero';

/** Whether `name` is a valid scale-set name ({@link SCALE_SET_NAME_RULE}). */
export function isScaleSetName(name: string): boolean {
  return SCALE_SET_NAME.test(name);
}

/** Whether `id` is a valid instance id ({@link INSTANCE_ID_RULE}). */
export function isInstanceId(id: string): boolean {
  return INSTANCE_ID.test(id);
}

/** The VM name of instance `instanceId` of `scaleSet`: `web_0`. */
export function instanceVmName(scaleSet: string, instanceId: string): string {
  return `${scaleSet}_${instanceId}`;
}

/** Orders instance ids as numbers ("2" before "10"). */
export function compareInstanceIds(a: string, b: string): number {
  return Number(a) - Number(b);
}

/**
 * The key of a scale set that a scale-set capture's parent session stores as its `vmId`
 * (`vmss:{subscription}/{resourceGroup}/{scaleSet}`, folded): never a VM id (a uuid), and with it
 * the store's lookup by VM finds the captures of one scale set.
 */
export function scaleSetKey(
  subscriptionId: string,
  resourceGroup: string,
  scaleSet: string,
): string {
  return `vmss:${subscriptionId}/${resourceGroup}/${scaleSet}`.toLowerCase();
}
