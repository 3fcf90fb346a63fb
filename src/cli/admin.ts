import { Command, Option } from 'commander';
import { apiCommand, withClient } from './cli-context.js';
import { UsageError } from './cli-errors.js';
import { printResult, type Column } from './output.js';
import { listValue, parseCount, resolveSubscription, segment } from './resource-scope.js';

/** The roles of an API token (docs/api.md "Authentication and tenancy"). */
export const TOKEN_ROLES = ['Reader', 'Contributor', 'Owner'] as const;

interface Subscription {
  readonly subscriptionId: string;
  readonly displayName: string;
  readonly state?: string;
  readonly createdAt: string;
}

interface CreatedToken {
  readonly tokenId: string;
  readonly token: string;
  readonly role: string;
  readonly subscriptionId: string;
}

interface CreatedEnrollmentToken {
  readonly tokenId: string;
  readonly token: string;
  readonly subscriptionId: string;
  readonly expiresAt: string;
}

interface EnrollmentToken {
  readonly tokenId: string;
  readonly state: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly takeover: { readonly resourceGroup: string; readonly name: string } | null;
  readonly usedAt: string | null;
  readonly revokedAt: string | null;
}

const SUBSCRIPTION_COLUMNS: readonly Column<Subscription>[] = [
  { header: 'SubscriptionId', get: (s) => s.subscriptionId },
  { header: 'DisplayName', get: (s) => s.displayName },
  { header: 'State', get: (s) => s.state },
  { header: 'Created', get: (s) => s.createdAt, kind: 'time' },
];

const NEW_SUBSCRIPTION_COLUMNS = SUBSCRIPTION_COLUMNS.filter((c) => c.header !== 'State');

const TOKEN_COLUMNS: readonly Column<CreatedToken>[] = [
  { header: 'TokenId', get: (t) => t.tokenId },
  { header: 'Role', get: (t) => t.role },
  { header: 'SubscriptionId', get: (t) => t.subscriptionId },
  { header: 'Token', get: (t) => t.token },
];

const ENROLLMENT_TOKEN_COLUMNS: readonly Column<CreatedEnrollmentToken>[] = [
  { header: 'TokenId', get: (t) => t.tokenId },
  { header: 'SubscriptionId', get: (t) => t.subscriptionId },
  { header: 'ExpiresAt', get: (t) => t.expiresAt, kind: 'time' },
  { header: 'Token', get: (t) => t.token },
];

const ENROLLMENT_TOKEN_LIST_COLUMNS: readonly Column<EnrollmentToken>[] = [
  { header: 'TokenId', get: (t) => t.tokenId },
  { header: 'State', get: (t) => t.state },
  { header: 'Created', get: (t) => t.createdAt, kind: 'time' },
  { header: 'ExpiresAt', get: (t) => t.expiresAt, kind: 'time' },
  {
    header: 'Takeover',
    get: (t) => (t.takeover ? `${t.takeover.resourceGroup}/${t.takeover.name}` : ''),
  },
];

const nativePath = (subscription: string) =>
  `/api/v1/subscriptions/${segment(subscription, '--subscription')}`;

/** `wirewatch admin`: tenants and credentials. */
export function adminCommand(): Command {
  return new Command('admin')
    .description('subscriptions (admin token), API tokens and enrollment tokens (Owner)')
    .addCommand(subscriptionCommand())
    .addCommand(tokenCommand())
    .addCommand(enrollTokenCommand())
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch admin token create --subscription "$SUB" --role Contributor\n',
    );
}

function subscriptionCommand(): Command {
  return new Command('subscription')
    .description('subscriptions: the tenants of a server')
    .addCommand(
      apiCommand('create')
        .description('create a subscription (admin token only)')
        .requiredOption('--display-name <name>', 'a name for people, 1-128 characters')
        .addHelpText(
          'after',
          '\nTable columns: SubscriptionId, DisplayName, Created.\n\nExample:\n  wirewatch admin subscription create --display-name prod -o tsv\n',
        )
        .action((o: { displayName: string }, command: Command) =>
          withClient(command, async ({ client, output }) => {
            const reply = await client.request('POST', '/api/v1/subscriptions', {
              body: { displayName: o.displayName },
            });
            printResult(output, reply.body as Subscription, NEW_SUBSCRIPTION_COLUMNS);
          }),
        ),
    )
    .addCommand(
      apiCommand('list')
        .description('list the subscriptions the token sees (all of them for the admin token)')
        .addHelpText(
          'after',
          '\nTable columns: SubscriptionId, DisplayName, State, Created.\n\nExample:\n  wirewatch admin subscription list -o table\n',
        )
        .action((_o: unknown, command: Command) =>
          withClient(command, async ({ client, output }) => {
            const subscriptions = listValue<Subscription>(
              await client.get('/api/v1/subscriptions'),
            );
            printResult(output, subscriptions, SUBSCRIPTION_COLUMNS);
          }),
        ),
    )
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch admin subscription create --display-name prod\n',
    );
}

function tokenCommand(): Command {
  return new Command('token')
    .description('API tokens of a subscription, each with a role (Owner)')
    .addCommand(
      apiCommand('create')
        .description('create an API token; it is shown this once')
        .addOption(
          new Option('--role <role>', 'what the token may do')
            .choices(TOKEN_ROLES)
            .makeOptionMandatory(),
        )
        .addHelpText(
          'after',
          `
Reader reads everything in the subscription; Contributor also creates, stops and deletes
captures, network watchers, VMs and storage accounts; Owner also manages tokens and reads the
audit log. The server keeps only a hash: store the token now (every output format shows it).

Table columns: TokenId, Role, SubscriptionId, Token.

Example:
  wirewatch admin token create --subscription "$SUB" --role Reader -o tsv | cut -f4
`,
        )
        .action((o: { role: string }, command: Command) =>
          withClient(command, async ({ client, output }) => {
            const path = `${nativePath(await resolveSubscription(client))}/tokens`;
            const reply = await client.request('POST', path, { body: { role: o.role } });
            printResult(output, reply.body as CreatedToken, TOKEN_COLUMNS);
          }),
        ),
    )
    .addCommand(
      apiCommand('revoke')
        .description('revoke an API token; it stops working at once')
        .requiredOption('--token-id <id>', 'the tokenId printed when the token was created')
        .addHelpText(
          'after',
          '\nPrints nothing on success.\n\nExample:\n  wirewatch admin token revoke --subscription "$SUB" --token-id 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n',
        )
        .action((o: { tokenId: string }, command: Command) =>
          withClient(command, async ({ client }) => {
            const path = `${nativePath(await resolveSubscription(client))}/tokens/${segment(o.tokenId, '--token-id')}`;
            await client.request('DELETE', path);
          }),
        ),
    )
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch admin token create --subscription "$SUB" --role Contributor\n',
    );
}

interface EnrollTokenCreateOptions {
  expiresInHours?: string;
  maxUses?: string;
  takeover?: boolean;
  resourceGroup?: string;
  name?: string;
}

function enrollTokenCommand(): Command {
  return new Command('enroll-token')
    .description('enrollment tokens: what `wirewatch agent --enroll-token` needs once (Owner)')
    .addCommand(
      apiCommand('create')
        .description('create an enrollment token for the agents of a subscription')
        .option(
          '--expires-in-hours <n>',
          'hours until it expires, 1-8760 (default 24; 1 with --takeover)',
        )
        .option('--max-uses <n>', 'how many VMs it may enroll, 1-1000000 (default 1000)')
        .option('--takeover', 'a takeover token: it enrolls only the VM -g/-n, once, replacing it')
        .option('-g, --resource-group <name>', 'with --takeover: resource group of the VM')
        .option(
          '-n, --name <vm>',
          'with --takeover: name of the VM (a scale-set instance: SCALESET_INSTANCEID, e.g. web_0)',
        )
        .addHelpText(
          'after',
          `
Up to --max-uses hosts (default 1000) may enroll with an ordinary token until it expires, each
under a new VM name; then it is refused (EnrollmentLimitReached). A VM that is enrolled already is never replaced (VmAlreadyEnrolled). To move a VM to a
rebuilt host (its agent.json lost), create a takeover token for it: it enrolls that VM only,
once, gives it a new credential (the old one stops working) and is audited as
virtualMachine.takeover. It is refused while the VM's agent is connected. The token is shown
this once.

Table columns: TokenId, SubscriptionId, ExpiresAt, Token.

Examples:
  wirewatch admin enroll-token create --subscription "$SUB" --expires-in-hours 2 -o tsv | cut -f4
  wirewatch admin enroll-token create --takeover -g web -n web-01 -o tsv | cut -f4
`,
        )
        .action((o: EnrollTokenCreateOptions, command: Command) =>
          withClient(command, async ({ client, output }) => {
            const hours =
              o.expiresInHours === undefined
                ? undefined
                : parseCount(o.expiresInHours, '--expires-in-hours', 1, 8760);
            const maxUses =
              o.maxUses === undefined
                ? undefined
                : parseCount(o.maxUses, '--max-uses', 1, 1_000_000);
            if (o.takeover && maxUses !== undefined) {
              throw new UsageError('a takeover token enrolls one VM: --max-uses goes without it');
            }
            if (!o.takeover && (o.resourceGroup !== undefined || o.name !== undefined)) {
              throw new UsageError('-g/--resource-group and -n/--name go with --takeover');
            }
            if (o.takeover && (o.resourceGroup === undefined || o.name === undefined)) {
              throw new UsageError('--takeover needs the VM: -g/--resource-group and -n/--name');
            }
            const path = `${nativePath(await resolveSubscription(client))}/enrollmentTokens`;
            const reply = await client.request('POST', path, {
              body: {
                ...(hours === undefined ? {} : { expiresInHours: hours }),
                ...(maxUses === undefined ? {} : { maxUses }),
                ...(o.takeover
                  ? { takeover: { resourceGroup: o.resourceGroup, name: o.name } }
                  : {}),
              },
            });
            printResult(output, reply.body as CreatedEnrollmentToken, ENROLLMENT_TOKEN_COLUMNS);
          }),
        ),
    )
    .addCommand(
      apiCommand('list')
        .description('list the enrollment tokens of a subscription (never the tokens themselves)')
        .addHelpText(
          'after',
          `
State is Active, Expired, Revoked or Used (a takeover token once used, an ordinary one once it
has enrolled maxUses VMs).

Table columns: TokenId, State, Created, ExpiresAt, Takeover.

Example:
  wirewatch admin enroll-token list --subscription "$SUB" -o table
`,
        )
        .action((_o: unknown, command: Command) =>
          withClient(command, async ({ client, output }) => {
            const path = `${nativePath(await resolveSubscription(client))}/enrollmentTokens`;
            const tokens = listValue<EnrollmentToken>(await client.get(path));
            printResult(output, tokens, ENROLLMENT_TOKEN_LIST_COLUMNS);
          }),
        ),
    )
    .addCommand(
      apiCommand('revoke')
        .description('revoke an enrollment token; it enrolls nothing any more')
        .requiredOption('--token-id <id>', 'the tokenId printed when it was created (or listed)')
        .addHelpText(
          'after',
          `
Agents that enrolled with it keep working: each has its own credential (delete a VM to cut
its agent off). Prints nothing on success.

Example:
  wirewatch admin enroll-token revoke --subscription "$SUB" --token-id 1b4e28ba-2fa1-11d2-883f-0016d3cca427
`,
        )
        .action((o: { tokenId: string }, command: Command) =>
          withClient(command, async ({ client }) => {
            const path = `${nativePath(await resolveSubscription(client))}/enrollmentTokens/${segment(o.tokenId, '--token-id')}`;
            await client.request('DELETE', path);
          }),
        ),
    )
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch admin enroll-token create --subscription "$SUB" --expires-in-hours 2\n',
    );
}
