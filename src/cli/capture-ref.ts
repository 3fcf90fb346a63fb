/**
 * Finding things the way az does before a packet-capture request: the network watcher of a
 * location (every capture command), the VM a capture targets and its location (`capture
 * create`), and a storage account given by name or id. `capture stream` shares these.
 */
import type { ApiClient } from './api-client.js';
import { RefusedError, UsageError } from './cli-errors.js';

/** A network watcher as the ARM list shows it (the fields the CLI reads). */
export interface WatcherView {
  readonly id: string;
  readonly name: string;
  readonly location: string;
}

/** A VM as Microsoft.Compute shows it (the fields the CLI reads). */
export interface VmView {
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

const subscriptions = new WeakMap<ApiClient, Promise<string>>();

/**
 * The subscription to act in: --subscription, WIREWATCH_SUBSCRIPTION or the profile's; failing
 * those, the only subscription the token sees (a subscription-scoped token implies its own).
 */
export function subscriptionOf(client: ApiClient): Promise<string> {
  let known = subscriptions.get(client);
  if (!known) {
    known = (async () => {
      if (client.connection.subscription) return client.connection.subscription;
      const visible = await client.get<{ value: { subscriptionId: string }[] }>(
        '/api/v1/subscriptions',
      );
      if (visible.value.length === 1) return visible.value[0]!.subscriptionId;
      throw new UsageError(
        `no subscription: pass --subscription ID (the token sees ${visible.value.length} subscriptions)`,
      );
    })();
    subscriptions.set(client, known);
  }
  return known;
}

/** Azure's location folding: "West Europe" and "westeurope" are the same location. */
export function foldLocation(location: string): string {
  return location.replace(/\s+/g, '').toLowerCase();
}

/** The subscription's network watcher in `location` (Azure keeps at most one per location). */
export async function watcherOfLocation(client: ApiClient, location: string): Promise<WatcherView> {
  const subscriptionId = await subscriptionOf(client);
  const wanted = foldLocation(location);
  if (wanted === '') throw new UsageError('--location must not be empty');
  const list = await client.get<{ value: WatcherView[] }>(
    `/subscriptions/${encodeURIComponent(subscriptionId)}/providers/Microsoft.Network/networkWatchers`,
  );
  const watcher = list.value.find((w) => foldLocation(w.location) === wanted);
  if (!watcher) {
    const known = [...new Set(list.value.map((w) => w.location))].sort();
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

/** The capture `name` under the watcher of `location`. */
export async function captureRefOf(
  client: ApiClient,
  location: string,
  name: string,
): Promise<CaptureRef> {
  return captureRefIn(await watcherOfLocation(client, location), name);
}

/** The capture `name` under `watcher`. */
export function captureRefIn(watcher: WatcherView, name: string): CaptureRef {
  if (name === '') throw new UsageError('--name must not be empty');
  return {
    watcher,
    name,
    path: `${watcher.id}/packetCaptures/${encodeURIComponent(name)}`,
  };
}

const VM_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Compute\/virtualMachines\/([^/]+)\/?$/i;

/**
 * The VM `--vm` names: a full resource id, or a name in `--resource-group` (as in az). Its
 * location decides the network watcher.
 */
export async function vmOf(
  client: ApiClient,
  vm: string,
  resourceGroup: string | undefined,
): Promise<VmView> {
  let path: string;
  if (vm.startsWith('/')) {
    const m = VM_ID.exec(vm);
    if (!m) {
      throw new UsageError(
        `--vm ${vm}: not a VM id (/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}); or give its name with --resource-group`,
      );
    }
    path = `/subscriptions/${m[1]!}/resourceGroups/${m[2]!}/providers/Microsoft.Compute/virtualMachines/${m[3]!}`;
  } else {
    if (resourceGroup === undefined || resourceGroup === '') {
      throw new UsageError(`--vm ${vm}: a VM name needs --resource-group (or give the VM's id)`);
    }
    path = `/subscriptions/${encodeURIComponent(await subscriptionOf(client))}/resourceGroups/${encodeURIComponent(resourceGroup)}/providers/Microsoft.Compute/virtualMachines/${encodeURIComponent(vm)}`;
  }
  return client.get<VmView>(path);
}

/** A VM scale set's id for `--target-type AzureVMSS` (wirewatch has no scale sets to look up). */
export async function scaleSetIdOf(
  client: ApiClient,
  vm: string,
  resourceGroup: string | undefined,
): Promise<string> {
  if (vm.startsWith('/')) return vm;
  if (resourceGroup === undefined || resourceGroup === '') {
    throw new UsageError(`--vm ${vm}: a scale set name needs --resource-group (or give its id)`);
  }
  return `/subscriptions/${await subscriptionOf(client)}/resourceGroups/${resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/${vm}`;
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
  account: string,
  resourceGroup: string | undefined,
): Promise<string> {
  if (account.startsWith('/')) return account;
  const subscriptionId = await subscriptionOf(client);
  const list = await client.get<{ value: StorageAccountEntry[] }>(
    `/api/v1/subscriptions/${encodeURIComponent(subscriptionId)}/storageAccounts`,
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
