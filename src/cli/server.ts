import { isIP } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';

interface ServerCommandOptions {
  dataDir: string;
  listen: string;
  tls?: string;
  tlsCert?: string;
  tlsKey?: string;
  db?: string;
  allowInsecureHttp?: boolean;
  quota?: number;
  maxVmsPerSubscription?: number;
  operationTimeout?: number;
  publicUrl?: string;
  rateLimit?: number;
  anonymousRateLimit?: number;
  trustProxy?: string[];
  logLevel: string;
  rotateAdminToken?: boolean;
  secretsKey?: string;
  tlsSan: string[];
  rotateSecretsKey?: boolean;
}

function positive(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new InvalidArgumentError('expected a whole number of at least 1');
  }
  return Number(value);
}

/** `ADDR[,ADDR]`: IP addresses (a repeated flag adds to the list). */
function addressList(value: string, previous: string[] = []): string[] {
  const addresses = value.split(',').map((a) => a.trim());
  for (const a of addresses) {
    if (isIP(a) === 0) {
      throw new InvalidArgumentError(`${JSON.stringify(a)} is not an IP address`);
    }
  }
  return [...previous, ...addresses];
}

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value))
    throw new InvalidArgumentError('expected a whole number (0 = no limit)');
  return Number(value);
}

/** `wirewatch server`: the control plane, in the foreground, until SIGINT or SIGTERM. */
export function serverCommand(): Command {
  return new Command('server')
    .description(
      'run the control plane: the Azure-compatible API, the native API and the agent channel',
    )
    .option(
      '--data-dir <dir>',
      'where the database, TLS files and admin token live',
      '/var/lib/wirewatch/server',
    )
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:7080')
    .addOption(
      new Option(
        '--tls <mode>',
        'make and use a local CA and server certificate in DIR/tls',
      ).choices(['self-signed']),
    )
    .option(
      '--tls-san <name>',
      'with --tls self-signed: another DNS name or IP address for the certificate (repeatable)',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--tls-cert <file>', 'server certificate (PEM), with --tls-key')
    .option('--tls-key <file>', 'server private key (PEM), with --tls-cert')
    .option('--db <url>', 'store: sqlite:PATH (default sqlite:DIR/wirewatch.db)')
    .option('--allow-insecure-http', 'allow plain HTTP on a non-loopback address')
    .option(
      '--rotate-admin-token',
      'make a new admin token in DIR/admin.token (printed once) and revoke every other',
    )
    .option(
      '--secrets-key <file>',
      'the key that seals storage account keys in the database (default DIR/secrets.key, made when missing)',
    )
    .option(
      '--rotate-secrets-key',
      're-seal every stored secret with a new secrets key, then replace the key file',
    )
    .option('--quota <n>', 'sessions NotStarted or Running per subscription and location', positive)
    .option(
      '--max-vms-per-subscription <n>',
      'VMs one subscription may enroll; more are refused with EnrollmentLimitReached (default 10000)',
      positive,
    )
    .option(
      '--operation-timeout <seconds>',
      'how long an agent has to acknowledge a create, stop or delete (default 60)',
      positive,
    )
    .option(
      '--public-url <url>',
      'base of the URLs the server hands out (polling headers, nextLink); default from --listen and TLS',
    )
    .option(
      '--rate-limit <n>',
      'requests per second per API token, in bursts of 10 s worth; 0 = no limit (default 100)',
      wholeNumber,
    )
    .option(
      '--anonymous-rate-limit <n>',
      'requests per second per remote address without a valid token (health, agents, failed logins); 0 = no limit (default 50)',
      wholeNumber,
    )
    .option(
      '--trust-proxy <addr[,addr]>',
      'reverse proxies (IP addresses) whose X-Forwarded-For names the client for the per-address limits and the audit log',
      addressList,
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(['debug', 'info', 'warn', 'error'])
        .default('info'),
    )
    .addHelpText(
      'after',
      '\nExample:\n  wirewatch server --data-dir /var/lib/wirewatch/server --listen 0.0.0.0:7443 --tls self-signed --tls-san wirewatch.example.com\n\nThe admin token is WIREWATCH_ADMIN_TOKEN, else DIR/admin.token (mode 0600); every other admin\ntoken is revoked at start, so changing the variable or --rotate-admin-token retires the old one.\n',
    )
    .action(async (options: ServerCommandOptions) => {
      if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
        throw new InvalidArgumentError('--tls-cert and --tls-key go together');
      }
      if (options.tls && options.tlsCert) {
        throw new InvalidArgumentError('use either --tls self-signed or --tls-cert/--tls-key');
      }
      // Loaded here, not at the top: every other command would pay for the server's modules.
      const { startServer } = await import('../server/start-server.js');
      const server = await startServer({
        dataDir: options.dataDir,
        listen: options.listen,
        ...(options.tls === 'self-signed' ? { tls: 'self-signed' as const } : {}),
        ...(options.tlsSan.length > 0 ? { tlsSans: options.tlsSan } : {}),
        ...(options.tlsCert && options.tlsKey
          ? { tls: { certPath: options.tlsCert, keyPath: options.tlsKey } }
          : {}),
        ...(options.db === undefined ? {} : { db: options.db }),
        ...(options.allowInsecureHttp ? { allowInsecureHttp: true } : {}),
        ...(options.quota === undefined ? {} : { quota: options.quota }),
        ...(options.maxVmsPerSubscription === undefined
          ? {}
          : { maxVmsPerSubscription: options.maxVmsPerSubscription }),
        ...(options.rotateAdminToken ? { rotateAdminToken: true } : {}),
        ...(options.secretsKey === undefined ? {} : { secretsKeyPath: options.secretsKey }),
        ...(options.rotateSecretsKey ? { rotateSecretsKey: true } : {}),
        ...(options.operationTimeout === undefined
          ? {}
          : { operationTimeoutMs: options.operationTimeout * 1000 }),
        ...(options.publicUrl === undefined ? {} : { publicUrl: options.publicUrl }),
        ...(options.rateLimit === undefined ? {} : { rateLimit: options.rateLimit }),
        ...(options.anonymousRateLimit === undefined
          ? {}
          : { anonymousRateLimit: options.anonymousRateLimit }),
        ...(options.trustProxy === undefined ? {} : { trustProxy: options.trustProxy }),
        ...(process.env['WIREWATCH_ADMIN_TOKEN']
          ? { adminToken: process.env['WIREWATCH_ADMIN_TOKEN'] }
          : {}),
        logger: { level: options.logLevel },
      });
      process.stderr.write(
        `wirewatch server listening on ${server.url}\n` +
          (server.app.publicUrl === server.url
            ? ''
            : `  public URL:     ${server.app.publicUrl}\n`) +
          (server.caPath ? `  CA certificate: ${server.caPath}\n` : '') +
          (server.tlsNames.length > 0 ? `  certificate for: ${server.tlsNames.join(', ')}\n` : '') +
          `  secrets key:    ${server.secretsKeyPath}` +
          (server.secrets.rotated
            ? ` (new; ${server.secrets.resealed} secrets re-sealed with it)\n`
            : server.secrets.resealed > 0
              ? ` (${server.secrets.resealed} plaintext secrets sealed)\n`
              : '\n') +
          `  admin token:    ${process.env['WIREWATCH_ADMIN_TOKEN'] ? 'WIREWATCH_ADMIN_TOKEN' : server.adminTokenPath}\n` +
          // Asked for: the operator needs the new token now, and it is shown only this once.
          (options.rotateAdminToken && server.newAdminToken
            ? `  new admin token (every earlier one is revoked): ${server.newAdminToken}\n`
            : ''),
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
    });
}
