/**
 * Where the resource commands (vm, watcher, storage, admin, audit) act: the subscription, the
 * ARM paths built from user input, and URLs the server hands back (nextLink, Location).
 */
import { parseResourceId } from '../model/resource-id.js';
import type { ApiClient } from './api-client.js';
import { UsageError } from './cli-errors.js';

/**
 * The subscription to act in: --subscription, WIREWATCH_SUBSCRIPTION or the profile's; failing
 * those, the only subscription the token sees (a subscription-scoped token implies its own).
 */
export async function resolveSubscription(client: ApiClient): Promise<string> {
  const known = client.connection.subscription;
  if (known) return known;
  const visible = await client.get<{ value: { subscriptionId: string }[] }>(
    '/api/v1/subscriptions',
  );
  const only = visible.value.length === 1 ? visible.value[0] : undefined;
  if (only) return only.subscriptionId;
  throw new UsageError(
    `no subscription: pass --subscription ID (the token sees ${visible.value.length} subscriptions)`,
  );
}

/** How to set a default for `-l` or `-g`, for the error that asks for one. */
export function defaultHint(key: 'location' | 'group'): string {
  const value = key === 'location' ? 'LOCATION' : 'RG';
  return `wirewatch configure --defaults ${key}=${value}`;
}

/**
 * -g/--resource-group as given, or the default: WIREWATCH_RESOURCE_GROUP, then the profile's
 * (`wirewatch configure --defaults group=RG`); undefined when there is none.
 */
export function resourceGroupOrDefault(
  client: ApiClient,
  given: string | undefined,
): string | undefined {
  return given ?? client.connection.resourceGroup;
}

/** -g/--resource-group or its default, where a command cannot do without one. */
export function requireResourceGroup(client: ApiClient, given: string | undefined): string {
  const group = resourceGroupOrDefault(client, given);
  if (group === undefined || group === '') {
    throw new UsageError(
      `-g/--resource-group is required (or set a default: ${defaultHint('group')})`,
    );
  }
  return group;
}

/**
 * -l/--location or its default (WIREWATCH_LOCATION, then the profile's), where a command cannot
 * do without one and there is nothing to infer it from (a new network watcher's location).
 */
export function requireLocation(client: ApiClient, given: string | undefined): string {
  const location = given ?? client.connection.location;
  if (location === undefined || location === '') {
    throw new UsageError(
      `-l/--location is required (or set a default: ${defaultHint('location')})`,
    );
  }
  return location;
}

/** One path segment from user input, percent-encoded; `.` and `..` would move the path. */
export function segment(value: string, flag: string): string {
  if (value === '' || value === '.' || value === '..') {
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is not a valid name`);
  }
  return encodeURIComponent(value);
}

export function subscriptionPath(subscription: string): string {
  return `/subscriptions/${segment(subscription, '--subscription')}`;
}

export function resourceGroupPath(subscription: string, resourceGroup: string): string {
  return `${subscriptionPath(subscription)}/resourceGroups/${segment(resourceGroup, '--resource-group')}`;
}

/** The Microsoft.Compute types a capture can target: a VM, or a scale set of instances. */
export const VM_TYPE = 'Microsoft.Compute/virtualMachines';
export const SCALE_SET_TYPE = 'Microsoft.Compute/virtualMachineScaleSets';
export type ComputeType = typeof VM_TYPE | typeof SCALE_SET_TYPE;

/**
 * The path of the VM (or, with `type`, the scale set) `name` in a resource group; `flag` is the
 * option the name came from.
 */
export function vmPath(
  subscription: string,
  resourceGroup: string,
  name: string,
  flag: string,
  type: ComputeType = VM_TYPE,
): string {
  return `${resourceGroupPath(subscription, resourceGroup)}/providers/${type}/${segment(name, flag)}`;
}

/**
 * The path of the VM (or, with `type`, the scale set) an ARM id (given with `flag`) names;
 * undefined when it names none.
 */
export function vmPathOfId(
  id: string,
  flag: string,
  type: ComputeType = VM_TYPE,
): string | undefined {
  const host = parseResourceId(id, type);
  return host && vmPath(host.subscriptionId, host.resourceGroup, host.name, flag, type);
}

/** `/subscriptions/{s}/resourceGroups/{rg}/…` → rg, from an ARM id. */
export function resourceGroupOf(id: unknown): string {
  if (typeof id !== 'string') return '';
  return /\/resourceGroups\/([^/]+)/i.exec(id)?.[1] ?? '';
}

/**
 * A URL the server sent back (nextLink, Location) as a path and query on the server the CLI
 * was told to use: the token goes only there, even if a proxy made the server name itself
 * differently.
 */
export function onServer(link: string): { path: string; query: Record<string, string> } {
  let url: URL;
  try {
    url = new URL(link, 'http://server.invalid');
  } catch {
    throw new UsageError(`the server sent an invalid link: ${link.slice(0, 200)}`);
  }
  // An opaque link (`x:@evil.example/p`) has a path without a leading '/': appended to the
  // server URL it would turn the server into userinfo and send the token to another host.
  if (!url.pathname.startsWith('/')) {
    throw new UsageError(`the server sent an invalid link: ${link.slice(0, 200)}`);
  }
  return { path: url.pathname, query: Object.fromEntries(url.searchParams) };
}

/** A whole number at least `min` (and at most `max`) from an option value, or a UsageError. */
export function parseCount(value: string, flag: string, min = 1, max?: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || (max ?? n) < n) {
    throw new UsageError(
      `${flag}: ${JSON.stringify(value)} is not a whole number ${max === undefined ? `≥ ${min}` : `from ${min} to ${max}`}`,
    );
  }
  return n;
}

/**
 * An option's parser of whole numbers at least `min` (default 0: the server reads 0 as "the
 * maximum" for most limits).
 */
export function countOption(flag: string, min = 0): (value: string) => number {
  return (value) => parseCount(value, flag, min);
}

/** The `value` array of an ARM or native list answer. */
export function listValue<T>(body: unknown): T[] {
  const value = (body as { value?: unknown } | undefined)?.value;
  return Array.isArray(value) ? (value as T[]) : [];
}
