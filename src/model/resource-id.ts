/**
 * ARM resource ids of one resource type in a resource group, read back into their parts: the one
 * parser behind the VM and storage-account ids of the control plane and the CLI.
 */

/** The parts of `/subscriptions/{s}/resourceGroups/{rg}/providers/{type}/{name}`. */
export interface ResourceIdParts {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
}

const RESOURCE_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/([^/]+\/[^/]+)\/([^/]+)\/?$/i;

/**
 * Parses the ARM id of a resource of `type` (`Microsoft.Compute/virtualMachines`), comparing the
 * type and the fixed segments without regard to case, as ARM does; a trailing `/` is allowed.
 *
 * @returns the id's parts as spelled in it, or undefined when `id` is not such an id.
 */
export function parseResourceId(id: string, type: string): ResourceIdParts | undefined {
  const [, subscriptionId, resourceGroup, idType, name] = RESOURCE_ID.exec(id) ?? [];
  if (
    subscriptionId === undefined ||
    resourceGroup === undefined ||
    name === undefined ||
    idType?.toLowerCase() !== type.toLowerCase()
  ) {
    return undefined;
  }
  return { subscriptionId, resourceGroup, name };
}
