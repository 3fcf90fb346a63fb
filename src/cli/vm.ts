import { Command } from 'commander';
import { apiCommand, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import { HOST_COLUMNS, type ComputeHost } from './compute-host.js';
import { printResult } from './output.js';
import {
  defaultHint,
  resolveSubscription,
  resourceGroupOrDefault,
  vmPath,
  vmPathOfId,
} from './resource-scope.js';
import { scopedListCommand } from './list-command.js';

/** Microsoft.Compute/virtualMachines as the server shows a host with an agent. */
type VirtualMachine = ComputeHost;

const COLUMNS = HOST_COLUMNS;

const PROVIDER = 'providers/Microsoft.Compute/virtualMachines';

/** `wirewatch vm`: the hosts running an agent, read the ARM way. */
export function vmCommand(): Command {
  return new Command('vm')
    .description('hosts running the wirewatch agent (Microsoft.Compute virtual machines)')
    .addCommand(
      scopedListCommand({
        what: 'the VMs (hosts with an agent)',
        provider: PROVIDER,
        columns: COLUMNS,
        example: 'wirewatch vm list -g web -o table',
      }),
    )
    .addCommand(vmShowCommand())
    .addHelpText('after', '\nExample:\n  wirewatch vm list -g web -o table\n');
}

interface ShowOptions {
  resourceGroup?: string | undefined;
  name?: string;
  ids?: string;
}

function vmShowCommand(): Command {
  return apiCommand('show')
    .description('show one VM and the state of its agent')
    .option('-g, --resource-group <name>', 'resource group of the VM')
    .option('-n, --name <vm>', 'name of the VM')
    .option('--ids <id>', 'the VM by its resource id, instead of -g and -n')
    .addHelpText(
      'after',
      `
Give either -g and -n, or --ids (whose subscription is used).

Examples:
  wirewatch vm show -g web -n web-01
  wirewatch vm show --ids /subscriptions/$SUB/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01 -o table
`,
    )
    .action((o: ShowOptions, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const path = await showPath(
          {
            ...o,
            resourceGroup:
              o.ids === undefined
                ? resourceGroupOrDefault(client, o.resourceGroup)
                : o.resourceGroup,
          },
          () => resolveSubscription(client),
        );
        printResult(output, await client.get<VirtualMachine>(path), COLUMNS);
      }),
    );
}

async function showPath(o: ShowOptions, subscription: () => Promise<string>): Promise<string> {
  if (o.ids !== undefined) {
    if (o.resourceGroup !== undefined || o.name !== undefined) {
      throw new UsageError('give either --ids or -g/--resource-group and -n/--name, not both');
    }
    const path = vmPathOfId(o.ids.trim(), '--ids');
    if (path === undefined) {
      throw new UsageError(
        `--ids: ${JSON.stringify(o.ids)} is not a VM id (/subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME)`,
      );
    }
    return path;
  }
  if (o.resourceGroup === undefined || o.name === undefined) {
    throw new UsageError(
      `-g/--resource-group and -n/--name are required (or --ids); -g may come from a default: ${defaultHint('group')}`,
    );
  }
  return vmPath(await subscription(), o.resourceGroup, o.name, '--name');
}
