import { Command } from 'commander';
import { ApiClient } from './api-client.js';
import { printResult, OUTPUT_FORMATS, type OutputFormat } from './output.js';
import { saveProfile } from './profile.js';
import { Option } from 'commander';

interface LoginOptions {
  server: string;
  token: string;
  ca?: string;
  profile: string;
  subscription?: string;
  location?: string;
  resourceGroup?: string;
  output: OutputFormat;
}

/**
 * `wirewatch login`: checks the server answers to the token, then saves a profile in
 * ~/.config/wirewatch/config.json (mode 0600). A subscription-scoped token (or an admin token
 * that sees exactly one subscription) makes that subscription the profile's default.
 */
export function loginCommand(): Command {
  return new Command('login')
    .description('save a server, token and CA as a profile (~/.config/wirewatch, mode 0600)')
    .requiredOption('--server <url>', 'the server, https://host:port')
    .requiredOption('--token <token>', 'an API token or the admin token')
    .option('--ca <file>', 'CA certificate (PEM) to trust for the server')
    .option('--profile <name>', 'profile name', 'default')
    .option('--subscription <id>', 'default subscription for this profile')
    .option('-l, --location <location>', 'default -l/--location for this profile')
    .option('-g, --resource-group <name>', 'default -g/--resource-group for this profile')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('json'),
    )
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch login --server https://wirewatch.example:7443 --token "$TOKEN" --ca ca.crt\n',
    )
    .action(async (o: LoginOptions) => {
      const connection = {
        server: o.server.replace(/\/+$/, ''),
        token: o.token,
        ...(o.ca ? { ca: o.ca } : {}),
      };
      const client = new ApiClient(connection);
      let visible: { value: { subscriptionId: string }[] };
      try {
        visible = await client.get('/api/v1/subscriptions');
      } finally {
        client.close();
      }
      const subscription =
        o.subscription ??
        (visible.value.length === 1 ? visible.value[0]!.subscriptionId : undefined);
      const file = await saveProfile(o.profile, {
        ...connection,
        ...(subscription ? { subscription } : {}),
        ...(o.location ? { location: o.location } : {}),
        ...(o.resourceGroup ? { resourceGroup: o.resourceGroup } : {}),
      });
      const result = {
        profile: o.profile,
        server: connection.server,
        subscription: subscription ?? null,
        config: file,
      };
      printResult(o.output, result, [
        { header: 'Profile', get: (r: typeof result) => r.profile },
        { header: 'Server', get: (r) => r.server },
        { header: 'Subscription', get: (r) => r.subscription },
      ]);
    });
}
