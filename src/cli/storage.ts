import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { apiCommand, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import { refusalInOptionWords, type OptionFields } from './option-words.js';
import { printResult, type Column } from './output.js';
import { listValue, requireResourceGroup, resolveSubscription, segment } from './resource-scope.js';

/** The native API's view of a registered storage account: never the connection string. */
interface StorageAccount {
  readonly id: string;
  readonly name: string;
  readonly resourceGroup: string;
  readonly accountName: string;
  readonly blobEndpoint: string;
  readonly createdAt: string;
}

const COLUMNS: readonly Column<StorageAccount>[] = [
  { header: 'Name', get: (a) => a.name },
  { header: 'ResourceGroup', get: (a) => a.resourceGroup },
  { header: 'AccountName', get: (a) => a.accountName },
  { header: 'BlobEndpoint', get: (a) => a.blobEndpoint },
  { header: 'Created', get: (a) => a.createdAt, kind: 'time' },
];

export const STORAGE_CONNECTION_STRING_ENV = 'WIREWATCH_STORAGE_CONNECTION_STRING';

const accountsPath = (subscription: string) =>
  `/api/v1/subscriptions/${segment(subscription, '--subscription')}/storageAccounts`;

/** `wirewatch storage`: storage accounts captures can be uploaded to. */
export function storageCommand(): Command {
  return new Command('storage')
    .description('storage accounts (Azure Storage or Azurite) that captures are uploaded to')
    .addCommand(storageAddCommand())
    .addCommand(storageListCommand())
    .addCommand(storageRemoveCommand())
    .addHelpText(
      'after',
      `\nExample:\n  wirewatch storage add -g captures -n capstore --connection-string @capstore.conn\n`,
    );
}

interface AddOptions {
  resourceGroup?: string;
  name: string;
  connectionString: string;
}

function storageAddCommand(): Command {
  return apiCommand('add')
    .description('register a storage account with its connection string (or replace it)')
    .option(
      '-g, --resource-group <name>',
      "resource group the account appears in (default: the profile's)",
    )
    .requiredOption('-n, --name <name>', 'its name in wirewatch: 3-24 lower-case letters, digits')
    .addOption(
      new Option(
        '--connection-string <cs>',
        'the connection string with the account key; @FILE reads it from FILE, - from stdin',
      )
        .env(STORAGE_CONNECTION_STRING_ENV)
        .makeOptionMandatory(),
    )
    .addHelpText(
      'after',
      `
A connection string given on the command line is visible to other users in ps(1) and lands in
the shell history: prefer @FILE, - (stdin) or ${STORAGE_CONNECTION_STRING_ENV}.
The server checks the account (it creates the container network-watcher-logs) and never shows
the connection string again; neither does this command.

Table columns: Name, ResourceGroup, AccountName, BlobEndpoint, Created.

Examples:
  wirewatch storage add -g captures -n capstore --connection-string @capstore.conn
  pass show azure/capstore | wirewatch storage add -g captures -n capstore --connection-string -
  ${STORAGE_CONNECTION_STRING_ENV}="$CS" wirewatch storage add -g captures -n capstore
`,
    )
    .action((o: AddOptions, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const resourceGroup = requireResourceGroup(client, o.resourceGroup);
        const connectionString = await readConnectionString(o.connectionString);
        const path = accountsPath(await resolveSubscription(client));
        const reply = await client
          .request('POST', path, {
            body: { name: o.name, resourceGroup, connectionString },
          })
          .catch((err: unknown) => {
            // Nothing sent is passed for hints: the connection string is never echoed.
            throw refusalInOptionWords(err, ADD_FIELDS, {});
          });
        printResult(output, reply.body as StorageAccount, COLUMNS);
      }),
    );
}

/** The fields of a storage account registration, by the option of `storage add` that sets them. */
const ADD_FIELDS: OptionFields = {
  name: '--name',
  resourceGroup: '--resource-group',
  connectionString: '--connection-string',
};

/** The value of --connection-string: literal, `@FILE`, or `-` for stdin; never echoed. */
async function readConnectionString(value: string): Promise<string> {
  let text: string;
  if (value === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    text = Buffer.concat(chunks).toString('utf8');
  } else if (value.startsWith('@')) {
    const file = value.slice(1);
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `--connection-string: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  } else {
    text = value;
  }
  const trimmed = text.trim();
  if (trimmed === '') {
    throw new UsageError(
      `--connection-string: empty${value === '-' ? ' (nothing on stdin)' : value.startsWith('@') ? ` (${value.slice(1)} is empty)` : ''}`,
    );
  }
  return trimmed;
}

function storageListCommand(): Command {
  return apiCommand('list')
    .description('list the registered storage accounts (never their keys)')
    .option('-g, --resource-group <name>', 'only this resource group')
    .addHelpText(
      'after',
      '\nTable columns: Name, ResourceGroup, AccountName, BlobEndpoint, Created.\n\nExample:\n  wirewatch storage list -o table\n',
    )
    .action((o: { resourceGroup?: string }, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const all = listValue<StorageAccount>(
          await client.get(accountsPath(await resolveSubscription(client))),
        );
        const group = o.resourceGroup?.toLowerCase();
        printResult(
          output,
          group === undefined ? all : all.filter((a) => a.resourceGroup.toLowerCase() === group),
          COLUMNS,
        );
      }),
    );
}

function storageRemoveCommand(): Command {
  return apiCommand('remove')
    .description('unregister a storage account; its blobs stay in the account')
    .option('-g, --resource-group <name>', "resource group of the account (default: the profile's)")
    .requiredOption('-n, --name <name>', 'its name in wirewatch')
    .addHelpText(
      'after',
      `
Prints nothing on success. Removing an account that is not registered succeeds (with a note on
stderr). Captures already uploading keep their SAS until it expires.

Example:
  wirewatch storage remove -g captures -n capstore
`,
    )
    .action((o: { resourceGroup?: string; name: string }, command: Command) =>
      withClient(command, async ({ client }) => {
        const group = requireResourceGroup(client, o.resourceGroup);
        const path = `${accountsPath(await resolveSubscription(client))}/${segment(group, '--resource-group')}/${segment(o.name, '--name')}`;
        const reply = await client.request('DELETE', path);
        if (reply.status === 204) {
          process.stderr.write(
            `wirewatch: storage account ${group}/${o.name} is not registered; nothing removed\n`,
          );
        }
      }),
    );
}
