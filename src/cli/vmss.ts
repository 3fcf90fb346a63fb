import { Command } from 'commander';
import type { ApiClient } from './api-client.js';
import { apiCommand, need, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import { HOST_COLUMNS, type ComputeHost } from './compute-host.js';
import { printResult, type Column } from './output.js';
import {
  listValue,
  requireResourceGroup,
  resolveSubscription,
  resourceGroupOf,
  SCALE_SET_TYPE,
  vmPath,
} from './resource-scope.js';
import { scopedListCommand } from './list-command.js';

/** Microsoft.Compute/virtualMachineScaleSets as the server shows a scale set of agents. */
interface ScaleSet {
  readonly id: string;
  readonly name: string;
  readonly location: string;
  readonly sku?: { readonly capacity?: number };
  readonly properties?: { readonly timeCreated?: string };
}

/** One instance (VirtualMachineScaleSetVM): a host with an agent, and its instance id. */
interface ScaleSetVm extends ComputeHost {
  readonly instanceId: string;
}

const SCALE_SET_COLUMNS: readonly Column<ScaleSet>[] = [
  { header: 'Name', get: (s) => s.name },
  { header: 'ResourceGroup', get: (s) => resourceGroupOf(s.id) },
  { header: 'Location', get: (s) => s.location },
  { header: 'Capacity', get: (s) => s.sku?.capacity },
  { header: 'Created', get: (s) => s.properties?.timeCreated, kind: 'time' },
];

const INSTANCE_COLUMNS: readonly Column<ScaleSetVm>[] = [
  { header: 'InstanceId', get: (vm) => vm.instanceId },
  ...HOST_COLUMNS,
];

const PROVIDER = `providers/${SCALE_SET_TYPE}`;

/** `wirewatch vmss`: scale sets of hosts running an agent, read the ARM way. */
export function vmssCommand(): Command {
  return new Command('vmss')
    .description(
      'scale sets of hosts running the wirewatch agent (Microsoft.Compute virtual machine scale sets)',
    )
    .addCommand(
      scopedListCommand({
        what: 'the scale sets',
        provider: PROVIDER,
        columns: SCALE_SET_COLUMNS,
        example: 'wirewatch vmss list -g web -o table',
      }),
    )
    .addCommand(showCommand())
    .addCommand(
      new Command('instance')
        .description('the instances of a scale set: one host with an agent each')
        .addCommand(instanceListCommand())
        .addCommand(instanceShowCommand())
        .addHelpText(
          'after',
          '\nExample:\n  wirewatch vmss instance list -g web -n web -o table\n',
        ),
    )
    .addHelpText(
      'after',
      '\nA host joins a scale set with `wirewatch agent --scale-set NAME`.\n\nExample:\n  wirewatch vmss list -g web -o table\n',
    );
}

interface SetOptions {
  resourceGroup?: string;
  name?: string;
}

/** `-g`/`-n` options of a command about one scale set. */
function scaleSetCommand(name: string): Command {
  return apiCommand(name)
    .option('-g, --resource-group <name>', 'resource group of the scale set')
    .option('-n, --name <scale-set>', 'name of the scale set');
}

/** The scale set's path from -g (or its default) and -n. */
async function scaleSetPath(o: SetOptions, client: ApiClient): Promise<string> {
  const group = requireResourceGroup(client, o.resourceGroup);
  const name = need(o.name, '-n/--name');
  const s = await resolveSubscription(client);
  return vmPath(s, group, name, '--name', SCALE_SET_TYPE);
}

function showCommand(): Command {
  return scaleSetCommand('show')
    .description('show one scale set')
    .addHelpText('after', '\nExample:\n  wirewatch vmss show -g web -n web -o table\n')
    .action((o: SetOptions, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const path = await scaleSetPath(o, client);
        printResult(output, await client.get<ScaleSet>(path), SCALE_SET_COLUMNS);
      }),
    );
}

function instanceListCommand(): Command {
  return scaleSetCommand('list')
    .description('list the instances of a scale set and the state of their agents')
    .addHelpText(
      'after',
      '\nTable columns: InstanceId, Name, ResourceGroup, Location, Connection, LastSeen, Hostname.\n\nExample:\n  wirewatch vmss instance list -g web -n web -o table\n',
    )
    .action((o: SetOptions, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const path = await scaleSetPath(o, client);
        const instances = listValue<ScaleSetVm>(await client.get(`${path}/virtualMachines`));
        printResult(output, instances, INSTANCE_COLUMNS);
      }),
    );
}

function instanceShowCommand(): Command {
  return scaleSetCommand('show')
    .description('show one instance of a scale set and the state of its agent')
    .option('--instance-id <id>', 'the instance id (digits)')
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch vmss instance show -g web -n web --instance-id 0\n',
    )
    .action((o: SetOptions & { instanceId?: string }, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const id = need(o.instanceId, '--instance-id');
        if (!/^\d+$/.test(id)) {
          throw new UsageError(
            `--instance-id: ${JSON.stringify(id)} is not an instance id (digits)`,
          );
        }
        const path = `${await scaleSetPath(o, client)}/virtualMachines/${id}`;
        printResult(output, await client.get<ScaleSetVm>(path), INSTANCE_COLUMNS);
      }),
    );
}
