import type { Command } from 'commander';
import type { ApiClient } from './api-client.js';
import { apiCommand, withClient } from './cli-context.js';
import { printResult, type Column } from './output.js';
import {
  listValue,
  resolveSubscription,
  resourceGroupPath,
  subscriptionPath,
} from './resource-scope.js';

/**
 * A provider's collection (`providers/Microsoft.Compute/virtualMachines`) in -g's resource group
 * when given, else in the whole subscription: the API's `value` array.
 */
export async function listInScope<T>(
  client: ApiClient,
  resourceGroup: string | undefined,
  provider: string,
): Promise<T[]> {
  const s = await resolveSubscription(client);
  const base =
    resourceGroup === undefined ? subscriptionPath(s) : resourceGroupPath(s, resourceGroup);
  return listValue<T>(await client.get(`${base}/${provider}`));
}

export interface ScopedListOptions<T> {
  /** What is listed, for the description: `the VMs (hosts with an agent)`. */
  readonly what: string;
  readonly provider: string;
  readonly columns: readonly Column<T>[];
  /** The example in the help: `wirewatch vm list -g web -o table`. */
  readonly example: string;
}

/**
 * `list [-g GROUP]` of an ARM collection (`vm list`, `vmss list`, `watcher list`): the
 * subscription's, or one resource group's, in the output format asked for.
 */
export function scopedListCommand<T>(o: ScopedListOptions<T>): Command {
  return apiCommand('list')
    .description(`list ${o.what} of the subscription or of a resource group`)
    .option('-g, --resource-group <name>', 'only this resource group')
    .addHelpText(
      'after',
      `\nTable columns: ${o.columns.map((c) => c.header).join(', ')}.\n\nExample:\n  ${o.example}\n`,
    )
    .action((opts: { resourceGroup?: string }, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const items = await listInScope<T>(client, opts.resourceGroup, o.provider);
        printResult(output, items, o.columns);
      }),
    );
}
