/**
 * Finding things the way az does before a packet-capture request: the network watcher of a
 * location (every capture command), the VM or scale set a capture targets and its location
 * (`capture create`), and a storage account given by name or id. `capture stream` shares these.
 */
import type { ApiClient } from './api-client.js';
import { RefusedError, UsageError } from './cli-errors.js';
import {
  defaultHint,
  resolveSubscription,
  SCALE_SET_TYPE,
  segment,
  subscriptionPath,
  VM_TYPE,
  vmPath,
  vmPathOfId,
} from './resource-scope.js';
import type { TargetChoice } from './capture-create-body.js';

/** A network watcher as the ARM list shows it (the fields the CLI reads). */
export interface WatcherView {
  readonly id: string;
  readonly name: string;
  readonly location: string;
}

/** A VM or scale set as Microsoft.Compute shows it (the fields the CLI reads). */
export interface TargetView {
  readonly id: string;
  readonly name: string;
  readonly location: string;
}

/** One capture on the server: its ARM path and the watcher it lives under. */
export interface CaptureRef {
  readonly watcher: WatcherView;
  readonly name: string;
  /** `/subscriptions/…/networkWatchers/{nw}/packetCaptures/{name}` */
  readonly path: string;
}

/** Azure's location folding: "West Europe" and "westeurope" are the same location. */
export function foldLocation(location: string): string {
  return location.replace(/\s+/g, '').toLowerCase();
}

/** `-l` of the commands on existing captures: optional, as watcherOfLocation says. */
export const LOCATION_HELP =
  "location of the network watcher (default: WIREWATCH_LOCATION, the profile's, or the subscription's only one)";

/**
 * The subscription's network watcher in `location` (Azure keeps at most one per location).
 * Without one, the default location (WIREWATCH_LOCATION, the profile's) is used; without that,
 * the subscription's only location, and a usage error naming its locations if it has several.
 */
export async function watcherOfLocation(
  client: ApiClient,
  subscriptionId: string,
  location: string | undefined,
): Promise<WatcherView> {
  const given = location ?? client.connection.location;
  const wanted = given === undefined ? undefined : foldLocation(given);
  if (wanted === '') throw new UsageError('--location must not be empty');
  const list = await client.get<{ value: WatcherView[] }>(
    `${subscriptionPath(subscriptionId)}/providers/Microsoft.Network/networkWatchers`,
  );
  const known = [...new Set(list.value.map((w) => w.location))].sort();
  if (wanted === undefined) {
    const only = list.value.length === 1 ? list.value[0] : undefined;
    if (only) return only;
    throw new UsageError(
      known.length === 0
        ? `-l/--location is required: subscription '${subscriptionId}' has no network watcher yet (the first VM enrolled in a location creates one)`
        : `-l/--location is required: subscription '${subscriptionId}' has network watchers in ${known.length} locations (${known.join(', ')}); pass -l LOCATION, or set a default: ${defaultHint('location')}`,
    );
  }
  const watcher = list.value.find((w) => foldLocation(w.location) === wanted);
  if (!watcher) {
    throw new RefusedError(
      404,
      'ResourceNotFound',
      `subscription '${subscriptionId}' has no network watcher in location '${wanted}'${
        known.length > 0 ? ` (it has: ${known.join(', ')})` : ''
      }; the first VM enrolled in a location creates one`,
      'location',
    );
  }
  return watcher;
}

/** The capture `name` under the watcher of `location`, in the command's subscription. */
export async function captureRefOf(
  client: ApiClient,
  location: string | undefined,
  name: string,
): Promise<CaptureRef> {
  const watcher = await watcherOfLocation(client, await resolveSubscription(client), location);
  return captureRefIn(watcher, name);
}

/** The capture `name` under `watcher`. */
export function captureRefIn(watcher: WatcherView, name: string): CaptureRef {
  return { watcher, name, path: `${watcher.id}/packetCaptures/${segment(name, '--name')}` };
}

/**
 * The VM or scale set a capture targets ({@link TargetChoice}: `--vm`, `--target` or `--vmss`):
 * a full resource id, or a name in `--resource-group` (as in az). Its location decides the
 * network watcher.
 */
export async function targetOf(
  client: ApiClient,
  subscriptionId: string,
  choice: TargetChoice,
  resourceGroup: string | undefined,
): Promise<TargetView> {
  const { option, nameOrId } = choice;
  const scaleSet = choice.type === 'AzureVMSS';
  const type = scaleSet ? SCALE_SET_TYPE : VM_TYPE;
  const what = scaleSet ? 'scale set' : 'VM';
  let path: string | undefined;
  if (nameOrId.startsWith('/')) {
    path = vmPathOfId(nameOrId, option, type);
    if (path === undefined) {
      throw new UsageError(
        `${option} ${nameOrId}: not a ${what} id (/subscriptions/{s}/resourceGroups/{rg}/providers/${type}/{name}); or give its name with --resource-group`,
      );
    }
  } else {
    if (resourceGroup === undefined || resourceGroup === '') {
      throw new UsageError(
        `${option} ${nameOrId}: a ${what} name needs --resource-group or a default group (${defaultHint('group')}), or give the ${what}'s id`,
      );
    }
    path = vmPath(subscriptionId, resourceGroup, nameOrId, option, type);
  }
  return client.get<TargetView>(path);
}

interface StorageAccountEntry {
  readonly id: string;
  readonly name: string;
  readonly resourceGroup: string;
}

/**
 * `--storage-account`: an id is used as given; a name is looked up among the subscription's
 * registered accounts (one of that name, or the one in `resourceGroup` when several share it).
 */
export async function storageAccountIdOf(
  client: ApiClient,
  subscriptionId: string,
  account: string,
  resourceGroup: string | undefined,
): Promise<string> {
  if (account.startsWith('/')) return account;
  const list = await client.get<{ value: StorageAccountEntry[] }>(
    `/api/v1/subscriptions/${segment(subscriptionId, '--subscription')}/storageAccounts`,
  );
  const named = list.value.filter((a) => a.name.toLowerCase() === account.toLowerCase());
  if (named.length === 1) return named[0]!.id;
  const inGroup = named.find(
    (a) =>
      resourceGroup !== undefined && a.resourceGroup.toLowerCase() === resourceGroup.toLowerCase(),
  );
  if (inGroup) return inGroup.id;
  if (named.length > 1) {
    throw new UsageError(
      `--storage-account ${account}: several accounts have this name (${named.map((a) => a.resourceGroup).join(', ')}); give its id`,
    );
  }
  const known = list.value.map((a) => a.name).sort();
  throw new RefusedError(
    404,
    'StorageAccountNotFound',
    `no storage account '${account}' is registered in subscription '${subscriptionId}'${
      known.length > 0 ? ` (registered: ${known.join(', ')})` : ''
    }`,
    'storageAccount',
  );
}
