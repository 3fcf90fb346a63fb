import { setTimeout as sleep } from 'node:timers/promises';
import { Command } from 'commander';
import type { ApiClient, JsonReply } from './api-client.js';
import { apiCommand, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import { printResult, type Column } from './output.js';
import {
  onServer,
  requireLocation,
  requireResourceGroup,
  resolveSubscription,
  resourceGroupOf,
  resourceGroupPath,
  segment,
} from './resource-scope.js';
import { scopedListCommand } from './list-command.js';

/** Azure's NetworkWatcher. */
interface NetworkWatcher {
  readonly id: string;
  readonly name: string;
  readonly location: string;
  readonly tags?: Record<string, string>;
  readonly properties?: { readonly provisioningState?: string };
}

const COLUMNS: readonly Column<NetworkWatcher>[] = [
  { header: 'Name', get: (w) => w.name },
  { header: 'ResourceGroup', get: (w) => resourceGroupOf(w.id) },
  { header: 'Location', get: (w) => w.location },
  { header: 'ProvisioningState', get: (w) => w.properties?.provisioningState },
  {
    header: 'Tags',
    get: (w) =>
      Object.entries(w.tags ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
  },
];

const PROVIDER = 'providers/Microsoft.Network/networkWatchers';

/** `wirewatch watcher`: network watchers, one per subscription and location. */
export function watcherCommand(): Command {
  return new Command('watcher')
    .description('network watchers: one per subscription and location; captures live in them')
    .addCommand(
      scopedListCommand({
        what: 'the network watchers',
        provider: PROVIDER,
        columns: COLUMNS,
        example: 'wirewatch watcher list -o table',
      }),
    )
    .addCommand(watcherCreateCommand())
    .addCommand(watcherDeleteCommand())
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch watcher create -g NetworkWatcherRG -n nw-weu -l westeurope\n',
    );
}

interface CreateOptions {
  resourceGroup?: string;
  name: string;
  location?: string;
  tags?: string[];
}

function watcherCreateCommand(): Command {
  return apiCommand('create')
    .description('create a network watcher, or update the tags of an existing one')
    .option('-g, --resource-group <name>', "resource group of the watcher (default: the profile's)")
    .requiredOption('-n, --name <name>', 'name of the watcher')
    .option(
      '-l, --location <location>',
      "its location (region), e.g. westeurope (default: the profile's)",
    )
    .option('--tags <key=value...>', 'tags, space-separated key[=value]; "" clears them')
    .addHelpText(
      'after',
      `
A subscription has at most one network watcher per location (NetworkWatcherCountLimitReached).
Without --tags, an existing watcher keeps its tags.

Example:
  wirewatch watcher create -g NetworkWatcherRG -n nw-weu -l westeurope --tags team=net env=prod
`,
    )
    .action((o: CreateOptions, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const tags = o.tags === undefined ? undefined : parseTags(o.tags);
        const group = requireResourceGroup(client, o.resourceGroup);
        const location = requireLocation(client, o.location);
        const path = `${resourceGroupPath(await resolveSubscription(client), group)}/${PROVIDER}/${segment(o.name, '--name')}`;
        const reply = await client.request('PUT', path, {
          body: { location, ...(tags === undefined ? {} : { tags }) },
        });
        printResult(output, reply.body as NetworkWatcher, COLUMNS);
      }),
    );
}

/** az's notation: `key[=value]` words; a single "" means no tags. */
export function parseTags(words: readonly string[]): Record<string, string> {
  // A Map, not an object literal: a tag named __proto__ must be a tag, not a prototype.
  const tags = new Map<string, string>();
  for (const word of words) {
    if (word === '' && words.length === 1) break;
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    if (key === '') throw new UsageError(`--tags: ${JSON.stringify(word)} has no key`);
    tags.set(key, eq < 0 ? '' : word.slice(eq + 1));
  }
  return Object.fromEntries(tags);
}

interface DeleteOptions {
  resourceGroup?: string;
  name: string;
  wait: boolean;
}

function watcherDeleteCommand(): Command {
  return apiCommand('delete')
    .description('delete a network watcher; its captures are stopped and removed')
    .option('-g, --resource-group <name>', "resource group of the watcher (default: the profile's)")
    .requiredOption('-n, --name <name>', 'name of the watcher')
    .option('--no-wait', 'return once the server accepted the deletion, without waiting for it')
    .addHelpText(
      'after',
      `
Prints nothing on success, as az does. Deleting a watcher that does not exist succeeds (with a
note on stderr). Without --no-wait the command polls the operation until it has finished.

Example:
  wirewatch watcher delete -g NetworkWatcherRG -n nw-weu
`,
    )
    .action((o: DeleteOptions, command: Command) =>
      withClient(command, async ({ client }) => {
        const group = requireResourceGroup(client, o.resourceGroup);
        const path = `${resourceGroupPath(await resolveSubscription(client), group)}/${PROVIDER}/${segment(o.name, '--name')}`;
        const reply = await client.request('DELETE', path);
        if (reply.status === 204) {
          process.stderr.write(
            `wirewatch: network watcher ${group}/${o.name} does not exist; nothing deleted\n`,
          );
          return;
        }
        if (o.wait) await waitForOperation(client, reply);
      }),
    );
}

/**
 * Follows a 202's `Location` until the operation has finished: 202 again means in progress (the
 * next poll after `Retry-After` seconds, 1–10), anything else is the outcome; a failed operation
 * answers an error, which is a refusal. The first poll goes at once: most deletes are done by
 * the time the 202 arrives.
 */
export async function waitForOperation(client: ApiClient, accepted: JsonReply): Promise<JsonReply> {
  let reply = accepted;
  let polls = 0;
  while (reply.status === 202) {
    const location = header(reply, 'location');
    if (location === undefined) return reply;
    if (polls++ > 0) {
      const retryAfter = Number(header(reply, 'retry-after') ?? 1);
      await sleep(1000 * Math.min(10, Math.max(1, Number.isFinite(retryAfter) ? retryAfter : 1)));
    }
    const { path, query } = onServer(location);
    reply = await client.request('GET', path, { query });
  }
  return reply;
}

function header(reply: JsonReply, name: string): string | undefined {
  const value = reply.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
