/**
 * The resource commands of the built `wirewatch` binary, run as a user runs them, against a real
 * server (started in this process, listening on loopback), a real Azurite and SYNTHETIC agents
 * (test/lab/synthetic-agent.ts: the real enrollment and channel protocol, no capture engine —
 * these commands never capture). Each profile lives in its own XDG_CONFIG_HOME under a temp dir.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AZURITE_ACCOUNT_KEY, startAzurite, type Azurite } from '../src/blob/azurite.js';
import {
  cli,
  freePort,
  runCli,
  tableTimeUtc,
  timeFirst,
  type CliResult,
} from './lab/cli-process.js';
import { CLEAN_ENV, json, refused, table, tsv, usage } from './lab/cli-output.js';
import { startTestServer, type TestServer } from './lab/control-plane.js';
import { runEveryStep } from './lab/exec.js';
import { SyntheticAgent } from './lab/synthetic-agent.js';

const execFileAsync = promisify(execFile);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

const VM_HEADERS = ['Name', 'ResourceGroup', 'Location', 'Connection', 'LastSeen', 'Hostname'];
const WATCHER_HEADERS = ['Name', 'ResourceGroup', 'Location', 'ProvisioningState', 'Tags'];
const STORAGE_HEADERS = ['Name', 'ResourceGroup', 'AccountName', 'BlobEndpoint', 'Created'];
const AUDIT_HEADERS = ['Time', 'Actor', 'Action', 'Resource', 'Source'];

// Every command is a new node process (about half a second of CPU each); on a busy two-core
// machine a test of twenty commands needs more than the default minute.
describe(
  'wirewatch vm, watcher, storage, admin, audit (built binary, real server)',
  { timeout: 240_000 },
  () => {
    let root: string;
    let server: TestServer;
    let azurite: Azurite;
    const agents: SyntheticAgent[] = [];
    let subscription: string;
    let ownerToken: string;
    let enrollToken: string;
    /** Every command output of the test, to check that no secret ever appears in one. */
    const seen: CliResult[] = [];

    const home = (name: string) => path.join(root, `home-${name}`);
    /** `wirewatch ARGS` with the profiles saved in HOME (home('admin') by default). */
    const ww = async (
      args: readonly string[],
      options: { home?: string; env?: Record<string, string | undefined> } = {},
    ) => {
      const r = await runCli(args, {
        ...CLEAN_ENV,
        XDG_CONFIG_HOME: options.home ?? home('admin'),
        ...options.env,
      });
      seen.push(r);
      return r;
    };
    /** As the subscription's Owner, logged in with its own profile (no --subscription needed). */
    const owner = (args: readonly string[], options: Parameters<typeof ww>[1] = {}) =>
      ww(args, { home: home('owner'), ...options });

    beforeAll(async () => {
      root = await mkdtemp(path.join(tmpdir(), 'ww-cli-admin-'));
      [server, azurite] = await Promise.all([
        startTestServer(),
        startAzurite({ dataDir: path.join(root, 'azurite') }),
      ]);

      const login = json(await ww(['login', '--server', server.url, '--token', server.adminToken]));
      expect(login).toMatchObject({ profile: 'default', server: server.url, subscription: null });

      const created = json(await ww(['admin', 'subscription', 'create', '--display-name', 'cli']));
      expect(created).toMatchObject({
        subscriptionId: expect.stringMatching(UUID),
        displayName: 'cli',
      });
      subscription = created.subscriptionId;

      const token = json(
        await ww(['admin', 'token', 'create', '--subscription', subscription, '--role', 'Owner']),
      );
      expect(token).toMatchObject({ role: 'Owner', subscriptionId: subscription });
      ownerToken = token.token;

      // A subscription-scoped token implies its subscription: the profile keeps it.
      const ownerLogin = json(
        await owner(['login', '--server', server.url, '--token', ownerToken, '-o', 'json']),
      );
      expect(ownerLogin.subscription).toBe(subscription);

      const enroll = json(await owner(['admin', 'enroll-token', 'create']));
      expect(enroll).toMatchObject({ subscriptionId: subscription, tokenId: expect.any(String) });
      enrollToken = enroll.token;

      const agent = (name: string) =>
        new SyntheticAgent({
          serverUrl: server.url,
          enrollToken,
          subscriptionId: subscription,
          resourceGroup: 'web',
          name,
          location: 'westeurope',
        });
      // web-01 is connected; web-02 enrolled once and never connected.
      agents.push(agent('web-01'), agent('web-02'));
      await agents[0]!.connect();
      await agents[1]!.enroll();
    }, 240_000);

    afterAll(async () => {
      await runEveryStep([
        ...agents.map((a) => () => a.close()),
        () => server?.close(),
        () => azurite?.close(),
        () => (root ? rm(root, { recursive: true, force: true }) : undefined),
      ]);
    });

    describe('admin', () => {
      it('subscription create and list, in every format', async () => {
        const row = tsv(
          await ww(['admin', 'subscription', 'create', '--display-name', 'tsv sub', '-o', 'tsv']),
          3,
        );
        expect(row).toEqual([
          [expect.stringMatching(UUID), 'tsv sub', expect.stringMatching(ISO_TIME)],
        ]);
        const rows = table(
          await ww([
            'admin',
            'subscription',
            'create',
            '--display-name',
            'table-sub',
            '-o',
            'table',
          ]),
          ['SubscriptionId', 'DisplayName', 'Created'],
        );
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatch(/^[0-9a-f-]{36} {2}table-sub +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(/);

        const list = json(await ww(['admin', 'subscription', 'list']));
        expect(list.map((s: { displayName: string }) => s.displayName).sort()).toEqual(
          ['cli', 'table-sub', 'tsv sub'].sort(),
        );
        expect(list[0]).toMatchObject({
          state: 'Enabled',
          subscriptionId: expect.stringMatching(UUID),
        });
        const listed = table(await ww(['admin', 'subscription', 'list', '-o', 'table']), [
          'SubscriptionId',
          'DisplayName',
          'State',
          'Created',
        ]);
        expect(listed).toHaveLength(3);
        // A value with a space stays one tsv field.
        const fields = tsv(await ww(['admin', 'subscription', 'list', '-o', 'tsv']), 4);
        expect(fields.map((f) => f[1]).sort()).toEqual(['cli', 'table-sub', 'tsv sub'].sort());
        expect(fields.every((f) => f[2] === 'Enabled')).toBe(true);

        // The Owner's token sees its own subscription only.
        expect(
          json(await owner(['admin', 'subscription', 'list'])).map(
            (s: { subscriptionId: string }) => s.subscriptionId,
          ),
        ).toEqual([subscription]);
        refused(
          await owner(['admin', 'subscription', 'create', '--display-name', 'x']),
          'AuthorizationFailed',
        );
        usage(await ww(['admin', 'subscription', 'create']), /--display-name/);
      });

      it('token create prints the token once in every format; revoke stops it at once', async () => {
        const reader = json(
          await ww([
            'admin',
            'token',
            'create',
            '--subscription',
            subscription,
            '--role',
            'Reader',
          ]),
        );
        expect(reader).toMatchObject({
          tokenId: expect.stringMatching(UUID),
          token: expect.any(String),
          role: 'Reader',
          subscriptionId: subscription,
        });
        const rows = table(
          await owner(['admin', 'token', 'create', '--role', 'Contributor', '-o', 'table']),
          ['TokenId', 'Role', 'SubscriptionId', 'Token'],
        );
        expect(rows[0]!.split(/ +/)).toEqual([
          expect.stringMatching(UUID),
          'Contributor',
          subscription,
          expect.stringMatching(/^\S{20,}$/),
        ]);
        const [fields] = tsv(
          await owner(['admin', 'token', 'create', '--role', 'Reader', '-o', 'tsv']),
          4,
        );
        expect(fields).toEqual([
          expect.stringMatching(UUID),
          'Reader',
          subscription,
          expect.any(String),
        ]);

        // The token works, until it is revoked.
        const asReader = {
          home: home('nobody'),
          env: { WIREWATCH_SERVER: server.url, WIREWATCH_TOKEN: fields![3] },
        };
        expect(json(await ww(['vm', 'list', '-g', 'web'], asReader))).toHaveLength(2);
        const revoke = await owner(['admin', 'token', 'revoke', '--token-id', fields![0]!]);
        expect(revoke).toMatchObject({ code: 0, stdout: '', stderr: '' });
        refused(await ww(['vm', 'list'], asReader), 'AuthenticationFailed');
        refused(
          await owner(['admin', 'token', 'revoke', '--token-id', 'no-such-token']),
          'ResourceNotFound',
        );

        usage(await owner(['admin', 'token', 'create']), /--role/);
        usage(await owner(['admin', 'token', 'create', '--role', 'Admin']), /--role.*Reader/);
        usage(await owner(['admin', 'token', 'revoke']), /--token-id/);
        // A Reader may not create tokens.
        refused(
          await ww(['admin', 'token', 'create', '--role', 'Owner'], {
            ...asReader,
            env: {
              ...asReader.env,
              WIREWATCH_TOKEN: reader.token,
              WIREWATCH_SUBSCRIPTION: subscription,
            },
          }),
          'AuthorizationFailed',
        );
      });

      it('enroll-token create, in every format, with --expires-in-hours', async () => {
        const before = Date.now();
        const created = json(
          await ww([
            'admin',
            'enroll-token',
            'create',
            '--subscription',
            subscription,
            '--expires-in-hours',
            '2',
          ]),
        );
        const expires = Date.parse(created.expiresAt) - before;
        expect(expires).toBeGreaterThan(2 * 3600_000 - 60_000);
        expect(expires).toBeLessThan(2 * 3600_000 + 60_000);
        const rows = table(await owner(['admin', 'enroll-token', 'create', '-o', 'table']), [
          'TokenId',
          'SubscriptionId',
          'ExpiresAt',
          'Token',
        ]);
        // ExpiresAt in two hours: the local time to the second, no "in …" beyond the hour.
        expect(rows[0]!.split(/ +/)).toEqual([
          expect.stringMatching(UUID),
          subscription,
          expect.stringMatching(/^\d{4}-\d\d-\d\d$/),
          expect.stringMatching(/^\d\d:\d\d:\d\d$/),
          expect.any(String),
        ]);
        const [fields] = tsv(await owner(['admin', 'enroll-token', 'create', '-o', 'tsv']), 4);
        // The printed token enrolls an agent.
        const agent = new SyntheticAgent({
          serverUrl: server.url,
          enrollToken: fields![3]!,
          subscriptionId: subscription,
          resourceGroup: 'batch',
          name: 'batch-01',
          location: 'westeurope',
        });
        await agent.enroll();
        expect(
          json(await owner(['vm', 'list', '-g', 'batch'])).map((v: { name: string }) => v.name),
        ).toEqual(['batch-01']);

        usage(
          await owner(['admin', 'enroll-token', 'create', '--expires-in-hours', '0']),
          /--expires-in-hours/,
        );
        usage(
          await owner(['admin', 'enroll-token', 'create', '--expires-in-hours', '1.5']),
          /--expires-in-hours/,
        );
      });

      it('enroll-token create --max-uses: the token enrolls that many VMs, then EnrollmentLimitReached', async () => {
        const created = json(await owner(['admin', 'enroll-token', 'create', '--max-uses', '1']));
        expect(created).toMatchObject({ maxUses: 1, uses: 0 });
        expect(json(await owner(['admin', 'enroll-token', 'create']))).toMatchObject({
          maxUses: 1000,
        });
        const agent = (name: string) =>
          new SyntheticAgent({
            serverUrl: server.url,
            enrollToken: created.token as string,
            subscriptionId: subscription,
            resourceGroup: 'capped',
            name,
            location: 'westeurope',
          });
        await agent('capped-01').enroll();
        await expect(agent('capped-02').enroll()).rejects.toThrow(/403.*EnrollmentLimitReached/);
        usage(await owner(['admin', 'enroll-token', 'create', '--max-uses', '0']), /--max-uses/);
        usage(
          await owner([
            'admin',
            'enroll-token',
            'create',
            '--max-uses',
            '2',
            '--takeover',
            '-g',
            'x',
            '-n',
            'y',
          ]),
          /--max-uses/,
        );
      });
      it('enroll-token list and revoke; --takeover re-enrolls one enrolled VM, once', async () => {
        const created = json(await owner(['admin', 'enroll-token', 'create']));
        const listed = await owner(['admin', 'enroll-token', 'list']);
        expect(listed.stdout).not.toContain(created.token);
        expect(
          json(listed).find((t: { tokenId: string }) => t.tokenId === created.tokenId),
        ).toMatchObject({ state: 'Active', takeover: null, revokedAt: null });
        const rows = table(await owner(['admin', 'enroll-token', 'list', '-o', 'table']), [
          'TokenId',
          'State',
          'Created',
          'ExpiresAt',
          'Takeover',
        ]);
        expect(rows.length).toBeGreaterThan(0);

        const revoked = await owner([
          'admin',
          'enroll-token',
          'revoke',
          '--token-id',
          created.tokenId,
        ]);
        expect(revoked).toMatchObject({ code: 0, stdout: '' });
        const agent = (name: string, token: string) =>
          new SyntheticAgent({
            serverUrl: server.url,
            enrollToken: token,
            subscriptionId: subscription,
            resourceGroup: 'moved',
            name,
            location: 'westeurope',
          });
        await expect(agent('revoked-01', created.token).enroll()).rejects.toThrow(
          /401.*InvalidEnrollmentToken/,
        );
        refused(
          await owner([
            'admin',
            'enroll-token',
            'revoke',
            '--token-id',
            '00000000-0000-4000-8000-000000000000',
          ]),
          'ResourceNotFound',
        );

        // A VM enrolled with an ordinary token cannot be enrolled again with one ...
        await agent('moved-01', enrollToken).enroll();
        await expect(agent('moved-01', enrollToken).enroll()).rejects.toThrow(
          /409.*VmAlreadyEnrolled/,
        );
        // ... but with a takeover token for it, once.
        usage(await owner(['admin', 'enroll-token', 'create', '--takeover']), /-g/);
        usage(await owner(['admin', 'enroll-token', 'create', '-n', 'moved-01']), /--takeover/);
        const takeover = json(
          await owner([
            'admin',
            'enroll-token',
            'create',
            '--takeover',
            '-g',
            'moved',
            '-n',
            'moved-01',
          ]),
        );
        await agent('moved-01', takeover.token).enroll();
        await expect(agent('moved-01', takeover.token).enroll()).rejects.toThrow(/401/);
        expect(
          json(await owner(['admin', 'enroll-token', 'list'])).find(
            (t: { tokenId: string }) => t.tokenId === takeover.tokenId,
          ),
        ).toMatchObject({ state: 'Used', takeover: { resourceGroup: 'moved', name: 'moved-01' } });
      });
    });

    describe('vm', () => {
      it('list and show, in every format, by -g/-n and by --ids', async () => {
        const [list, group, none, rows, fields] = await Promise.all([
          owner(['vm', 'list']),
          owner(['vm', 'list', '-g', 'WEB']),
          owner(['vm', 'list', '-g', 'nothing-here']),
          owner(['vm', 'list', '-g', 'web', '-o', 'table']),
          owner(['vm', 'list', '-g', 'web', '-o', 'tsv']),
        ]);
        const vms = json(list);
        expect(vms.map((v: { name: string }) => v.name).sort()).toEqual(
          expect.arrayContaining(['web-01', 'web-02']),
        );
        const web01 = vms.find((v: { name: string }) => v.name === 'web-01');
        expect(web01).toMatchObject({
          id: `/subscriptions/${subscription}/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01`,
          type: 'Microsoft.Compute/virtualMachines',
          location: 'westeurope',
          properties: { agent: { connectionState: 'Connected', hostname: 'synthetic-web-01' } },
        });
        expect(json(group)).toHaveLength(2);
        expect(json(none)).toEqual([]);

        const lines = table(rows, VM_HEADERS);
        expect(lines).toHaveLength(2);
        // LastSeen as local time (TZ=UTC here) and how long ago; ISO in json and tsv.
        const web01Row = /^web-01 +web +westeurope +Connected +(.+?) +synthetic-web-01$/.exec(
          lines.find((l) => l.startsWith('web-01'))!,
        );
        // The json and the table are read at the same time, and the agent's heartbeat may move
        // lastSeen on in between: the table shows a time in the table's form, within a heartbeat
        // or two of the json's.
        const seenCell = web01Row?.[1] ?? '';
        const seenAt = Date.parse(`${seenCell.slice(0, 19).replace(' ', 'T')}Z`);
        const jsonSeenAt = Date.parse(web01.properties.agent.lastSeen as string);
        expect(seenCell).toMatch(tableTimeUtc(new Date(seenAt).toISOString()));
        expect(Math.abs(seenAt - jsonSeenAt)).toBeLessThan(60_000);
        expect(lines.find((l) => l.startsWith('web-02'))).toMatch(
          /^web-02 +web +westeurope +Disconnected +synthetic-web-02$/,
        );
        const byName = Object.fromEntries(tsv(fields, 6).map((f) => [f[0], f]));
        expect(byName['web-01']).toEqual([
          'web-01',
          'web',
          'westeurope',
          'Connected',
          expect.stringMatching(ISO_TIME),
          'synthetic-web-01',
        ]);
        // A VM never seen has no LastSeen: an empty field, the columns stay in place.
        expect(byName['web-02']).toEqual([
          'web-02',
          'web',
          'westeurope',
          'Disconnected',
          '',
          'synthetic-web-02',
        ]);

        const [show, byId, showTable, showTsv] = await Promise.all([
          owner(['vm', 'show', '-g', 'web', '-n', 'web-01']),
          ww(['vm', 'show', '--ids', web01.id]),
          owner(['vm', 'show', '-g', 'web', '-n', 'web-02', '-o', 'table']),
          owner(['vm', 'show', '-g', 'web', '-n', 'web-01', '-o', 'tsv']),
        ]);
        expect(json(show)).toMatchObject({ id: web01.id, name: 'web-01' });
        // --ids carries its subscription: the admin profile has none and needs none.
        expect(json(byId)).toMatchObject({ id: web01.id });
        expect(table(showTable, VM_HEADERS)).toHaveLength(1);
        expect(tsv(showTsv, 6)[0]!.slice(0, 4)).toEqual([
          'web-01',
          'web',
          'westeurope',
          'Connected',
        ]);

        refused(await owner(['vm', 'show', '-g', 'web', '-n', 'web-99']), 'ResourceNotFound');
        usage(await owner(['vm', 'show', '-g', 'web']), /--name/);
        usage(await owner(['vm', 'show', '--ids', web01.id, '-n', 'web-01']), /--ids/);
        usage(await owner(['vm', 'show', '--ids', '/subscriptions/x/vm']), /--ids/);
        // The admin token sees several subscriptions: it must say which.
        usage(await ww(['vm', 'list']), /--subscription/);
      });
    });

    describe('watcher', () => {
      it('list, create (with tags), delete, in every format', async () => {
        // Enrolling the first VM of westeurope created its watcher.
        const auto = json(await owner(['watcher', 'list']));
        expect(auto).toEqual([
          expect.objectContaining({
            name: 'NetworkWatcher_westeurope',
            location: 'westeurope',
            type: 'Microsoft.Network/networkWatchers',
          }),
        ]);

        const created = json(
          await owner([
            'watcher',
            'create',
            '-g',
            'net',
            '-n',
            'nw-local',
            '-l',
            'local',
            '--tags',
            'team=net',
            'env=prod',
            'flag',
          ]),
        );
        expect(created).toMatchObject({
          name: 'nw-local',
          location: 'local',
          tags: { team: 'net', env: 'prod', flag: '' },
          properties: { provisioningState: 'Succeeded' },
        });
        // Again without --tags: an update that keeps them, shown as a table.
        const rows = table(
          await owner([
            'watcher',
            'create',
            '-g',
            'net',
            '-n',
            'nw-local',
            '-l',
            'local',
            '-o',
            'table',
          ]),
          WATCHER_HEADERS,
        );
        expect(rows).toEqual([
          expect.stringMatching(/^nw-local +net +local +Succeeded +team=net,env=prod,flag=$/),
        ]);
        // --tags "" clears them; tsv.
        expect(
          tsv(
            await owner([
              'watcher',
              'create',
              '-g',
              'net',
              '-n',
              'nw-local',
              '-l',
              'local',
              '--tags',
              '',
              '-o',
              'tsv',
            ]),
            5,
          ),
        ).toEqual([['nw-local', 'net', 'local', 'Succeeded', '']]);

        const [all, inNet, listTable, listTsv] = await Promise.all([
          owner(['watcher', 'list']),
          owner(['watcher', 'list', '-g', 'net']),
          owner(['watcher', 'list', '-o', 'table']),
          owner(['watcher', 'list', '-o', 'tsv']),
        ]);
        expect(json(all)).toHaveLength(2);
        expect(json(inNet).map((w: { name: string }) => w.name)).toEqual(['nw-local']);
        expect(table(listTable, WATCHER_HEADERS)).toHaveLength(2);
        expect(
          tsv(listTsv, 5)
            .map((f) => f[0])
            .sort(),
        ).toEqual(['NetworkWatcher_westeurope', 'nw-local']);

        // One watcher per location.
        refused(
          await owner(['watcher', 'create', '-g', 'net', '-n', 'nw-two', '-l', 'local']),
          'NetworkWatcherCountLimitReached',
        );
        usage(await owner(['watcher', 'create', '-g', 'net', '-n', 'nw-two']), /--location/);
        usage(
          await owner(['watcher', 'create', '-g', 'net', '-n', 'x', '-l', 'y', '--tags', '=v']),
          /--tags/,
        );

        // Delete waits for the operation and prints nothing; absent is a note, not a failure.
        expect(await owner(['watcher', 'delete', '-g', 'net', '-n', 'nw-local'])).toMatchObject({
          code: 0,
          stdout: '',
          stderr: '',
        });
        const again = await owner(['watcher', 'delete', '-g', 'net', '-n', 'nw-local']);
        expect(again).toMatchObject({ code: 0, stdout: '' });
        expect(again.stderr).toMatch(
          /^wirewatch: network watcher net\/nw-local does not exist; nothing deleted\n$/,
        );
        json(await owner(['watcher', 'create', '-g', 'net', '-n', 'nw-local', '-l', 'local']));
        expect(
          await owner(['watcher', 'delete', '-g', 'net', '-n', 'nw-local', '--no-wait']),
        ).toMatchObject({
          code: 0,
          stdout: '',
          stderr: '',
        });
        expect(json(await owner(['watcher', 'list', '-g', 'net']))).toEqual([]);
        usage(await owner(['watcher', 'delete', '-g', 'net']), /--name/);
      });

      it('refuses a Reader what needs a Contributor', async () => {
        const token = json(await owner(['admin', 'token', 'create', '--role', 'Reader'])).token;
        const asReader = {
          home: home('nobody'),
          env: { WIREWATCH_SERVER: server.url, WIREWATCH_TOKEN: token },
        };
        expect(json(await ww(['watcher', 'list'], asReader))).toHaveLength(1);
        refused(
          await ww(['watcher', 'create', '-g', 'net', '-n', 'nw-r', '-l', 'northeurope'], asReader),
          'AuthorizationFailed',
        );
        refused(await ww(['audit', 'list'], asReader), 'AuthorizationFailed');
      });
    });

    describe('storage', () => {
      it('add by option, @file, stdin and environment; list; remove; the key is never shown', async () => {
        const cs = azurite.connectionString;
        const added = json(
          await owner([
            'storage',
            'add',
            '-g',
            'captures',
            '-n',
            'capstore',
            '--connection-string',
            cs,
          ]),
        );
        expect(added).toEqual({
          id: `/subscriptions/${subscription}/resourceGroups/captures/providers/Microsoft.Storage/storageAccounts/capstore`,
          name: 'capstore',
          resourceGroup: 'captures',
          accountName: 'devstoreaccount1',
          blobEndpoint: azurite.blobEndpoint,
          createdAt: expect.stringMatching(ISO_TIME),
        });

        const file = path.join(root, 'capstore.conn');
        await writeFile(file, `${cs}\n`, { mode: 0o600 });
        const rows = table(
          await owner([
            'storage',
            'add',
            '-g',
            'captures',
            '-n',
            'second',
            '--connection-string',
            `@${file}`,
            '-o',
            'table',
          ]),
          STORAGE_HEADERS,
        );
        expect(rows).toEqual([
          expect.stringMatching(
            new RegExp(`^second +captures +devstoreaccount1 +${azurite.blobEndpoint} +\\d{4}-`),
          ),
        ]);

        // From stdin, in a shell pipe, as the help shows.
        const piped = await execFileAsync(
          'bash',
          [
            '-c',
            `printf '%s\\n' "$CS" | "$NODE" "$CLI" storage add -g other -n third --connection-string - -o tsv`,
          ],
          {
            env: {
              ...withoutWirewatchEnv(process.env),
              XDG_CONFIG_HOME: home('owner'),
              CS: cs,
              NODE: process.execPath,
              CLI: cli,
            },
          },
        );
        expect(piped.stderr).toBe('');
        expect(tsv({ code: 0, stdout: piped.stdout, stderr: '' }, 5)).toEqual([
          [
            'third',
            'other',
            'devstoreaccount1',
            azurite.blobEndpoint,
            expect.stringMatching(ISO_TIME),
          ],
        ]);
        expect(piped.stdout).not.toContain(AZURITE_ACCOUNT_KEY);

        // From the environment; registering the same group and name again replaces it.
        const replaced = json(
          await owner(['storage', 'add', '-g', 'captures', '-n', 'capstore'], {
            env: { WIREWATCH_STORAGE_CONNECTION_STRING: cs },
          }),
        );
        expect(replaced.id).toBe(added.id);

        const [list, inGroup, listTable, listTsv] = await Promise.all([
          owner(['storage', 'list']),
          owner(['storage', 'list', '-g', 'CAPTURES']),
          owner(['storage', 'list', '-o', 'table']),
          owner(['storage', 'list', '-o', 'tsv']),
        ]);
        expect(
          json(list)
            .map((a: { name: string }) => a.name)
            .sort(),
        ).toEqual(['capstore', 'second', 'third']);
        expect(
          json(inGroup)
            .map((a: { name: string }) => a.name)
            .sort(),
        ).toEqual(['capstore', 'second']);
        expect(table(listTable, STORAGE_HEADERS)).toHaveLength(3);
        expect(tsv(listTsv, 5)).toHaveLength(3);

        expect(await owner(['storage', 'remove', '-g', 'other', '-n', 'third'])).toMatchObject({
          code: 0,
          stdout: '',
          stderr: '',
        });
        const again = await owner(['storage', 'remove', '-g', 'other', '-n', 'third']);
        expect(again).toMatchObject({ code: 0, stdout: '' });
        expect(again.stderr).toMatch(
          /^wirewatch: storage account other\/third is not registered; nothing removed\n$/,
        );
        expect(
          json(await owner(['storage', 'list']))
            .map((a: { name: string }) => a.name)
            .sort(),
        ).toEqual(['capstore', 'second']);

        // Refusals and usage errors never echo the connection string either.
        const wrongKey = cs.replace(AZURITE_ACCOUNT_KEY, Buffer.alloc(64, 7).toString('base64'));
        refused(
          await owner([
            'storage',
            'add',
            '-g',
            'captures',
            '-n',
            'badkey',
            '--connection-string',
            wrongKey,
          ]),
          'StorageAccountAccessDenied',
        );
        // The refusals name the options typed, not the body's fields.
        const badString = await owner([
          'storage',
          'add',
          '-g',
          'captures',
          '-n',
          'bad',
          '--connection-string',
          'AccountName=x;Nonsense',
        ]);
        refused(badString, 'InvalidConnectionString');
        expect(badString.stderr).toMatch(
          /^wirewatch: InvalidConnectionString: --connection-string: /,
        );
        const badName = await owner([
          'storage',
          'add',
          '-g',
          'captures',
          '-n',
          'Bad_Name',
          '--connection-string',
          cs,
        ]);
        refused(badName, 'InvalidResourceName');
        expect(badName.stderr).toBe(
          'wirewatch: InvalidResourceName: --name "Bad_Name" is not a valid storage account name: 3 to 24 lower-case letters and digits\n',
        );
        usage(await owner(['storage', 'add', '-g', 'captures', '-n', 'x']), /--connection-string/);
        usage(
          await owner([
            'storage',
            'add',
            '-g',
            'captures',
            '-n',
            'x',
            '--connection-string',
            `@${file}.missing`,
          ]),
          /--connection-string: cannot read .*ENOENT/,
        );
        usage(await owner(['storage', 'remove', '-n', 'x']), /--resource-group/);
        for (const r of seen) {
          expect(r.stdout + r.stderr).not.toContain(AZURITE_ACCOUNT_KEY);
          expect(r.stdout + r.stderr).not.toMatch(/AccountKey=/i);
        }
      });
    });

    describe('audit', () => {
      it('list newest first, --top pages with a note, --all follows nextLink, every format', async () => {
        const [all, top, every, rows, fields] = await Promise.all([
          owner(['audit', 'list', '--top', '1000']),
          owner(['audit', 'list', '--top', '2']),
          owner(['audit', 'list', '--top', '3', '--all']),
          owner(['audit', 'list', '-o', 'table']),
          owner(['audit', 'list', '-o', 'tsv']),
        ]);
        const entries = json(all);
        expect(entries.length).toBeGreaterThan(5);
        const actions = entries.map((e: { action: string }) => e.action);
        expect(actions).toEqual(
          expect.arrayContaining([
            'token.create',
            'token.revoke',
            'enrollmentToken.create',
            'storageAccount.create',
            'storageAccount.delete',
          ]),
        );
        const times = entries.map((e: { time: string }) => Date.parse(e.time));
        expect(times).toEqual([...times].sort((a, b) => b - a));
        expect(entries[0]).toMatchObject({
          actor: expect.any(String),
          resourceId: expect.any(String),
          sourceIp: '127.0.0.1',
        });

        // One page, and a note on stderr (not stdout) that more exist.
        expect(top.code).toBe(0);
        expect(JSON.parse(top.stdout)).toEqual(entries.slice(0, 2));
        expect(top.stderr).toMatch(/^wirewatch: more entries exist: pass --all[^\n]*\n$/);
        // Every page, pages of 3.
        expect(json(every)).toEqual(entries);

        // The table: local time (TZ=UTC) with how long ago, the id shortened to its type/name.
        const lines = table(rows, AUDIT_HEADERS);
        const [time, ...cells] = timeFirst(lines[0]!);
        expect(time).toMatch(tableTimeUtc(entries[0].time));
        expect(cells).toEqual([
          entries[0].actor,
          entries[0].action,
          `…/${entries[0].resourceId.split('/').slice(-2).join('/')}`,
          '127.0.0.1',
        ]);
        expect(tsv(fields, 5)[0]).toEqual([
          entries[0].time,
          entries[0].actor,
          entries[0].action,
          entries[0].resourceId,
          '127.0.0.1',
        ]);

        usage(await owner(['audit', 'list', '--top', '0']), /--top/);
        usage(await owner(['audit', 'list', '--top', '1001']), /--top/);
      });
    });

    describe('connection and exit codes', () => {
      it('WIREWATCH_SERVER and WIREWATCH_TOKEN stand in for a profile; the token implies its subscription', async () => {
        const env = { WIREWATCH_SERVER: server.url, WIREWATCH_TOKEN: ownerToken };
        const vms = json(await ww(['vm', 'list', '-g', 'web'], { home: home('none'), env }));
        expect(vms).toHaveLength(2);
        // And they override a saved profile.
        const other = await ww(['vm', 'list'], {
          home: home('owner'),
          env: { WIREWATCH_TOKEN: 'wwt_not_a_token' },
        });
        refused(other, 'AuthenticationFailed');
        usage(await ww(['vm', 'list'], { home: home('none') }), /not logged in/);
        usage(await owner(['vm', 'list', '--profile', 'nope']), /--profile nope/);
        usage(await owner(['vm', 'list', '-o', 'yaml']), /--output/);
      });

      it('exits 3 when the server is unreachable', async () => {
        const port = await freePort();
        const r = await ww(['watcher', 'list'], {
          home: home('none'),
          env: { WIREWATCH_SERVER: `http://127.0.0.1:${port}`, WIREWATCH_TOKEN: ownerToken },
        });
        expect(r).toMatchObject({ code: 3, stdout: '' });
        expect(r.stderr).toMatch(
          new RegExp(
            `^wirewatch: ServerUnreachable: cannot reach http://127\\.0\\.0\\.1:${port}: [^\\n]*ECONNREFUSED[^\\n]*\\n$`,
          ),
        );
      });

      it('exits 3 for https without the CA, and works with it', async () => {
        const tlsServer = await startTestServer({ tls: 'self-signed' });
        try {
          const env = { WIREWATCH_SERVER: tlsServer.url, WIREWATCH_TOKEN: tlsServer.adminToken };
          const r = await ww(['admin', 'subscription', 'list'], { home: home('none'), env });
          expect(r).toMatchObject({ code: 3, stdout: '' });
          expect(r.stderr).toMatch(
            /^wirewatch: TlsFailure: TLS failure talking to https:[^\n]*WIREWATCH_CA[^\n]*\n$/,
          );
          const ok = await ww(['admin', 'subscription', 'list'], {
            home: home('none'),
            env: { ...env, WIREWATCH_CA: tlsServer.server.caPath },
          });
          expect(json(ok)).toEqual([]);
        } finally {
          await tlsServer.close();
        }
      });
    });

    describe('help and completion', () => {
      const commands = [
        ['vm'],
        ['vm', 'list'],
        ['vm', 'show'],
        ['watcher'],
        ['watcher', 'list'],
        ['watcher', 'create'],
        ['watcher', 'delete'],
        ['storage'],
        ['storage', 'add'],
        ['storage', 'list'],
        ['storage', 'remove'],
        ['admin'],
        ['admin', 'subscription'],
        ['admin', 'subscription', 'create'],
        ['admin', 'subscription', 'list'],
        ['admin', 'token'],
        ['admin', 'token', 'create'],
        ['admin', 'token', 'revoke'],
        ['admin', 'enroll-token'],
        ['admin', 'enroll-token', 'create'],
        ['admin', 'enroll-token', 'list'],
        ['admin', 'enroll-token', 'revoke'],
        ['audit'],
        ['audit', 'list'],
        ['completion'],
      ];

      it('--help on every command shows an example, on stdout, exit 0', async () => {
        const results = await Promise.all(commands.map((c) => runCli([...c, '--help'], CLEAN_ENV)));
        results.forEach((r, i) => {
          const c = commands[i]!;
          expect(r, c.join(' ')).toMatchObject({ code: 0, stderr: '' });
          expect(r.stdout).toContain(`Usage: wirewatch ${c.join(' ')}`);
          expect(r.stdout, c.join(' ')).toMatch(new RegExp(`Examples?:\\n  .*wirewatch ${c[0]}`));
        });
      });

      it('completion bash installs a completion generated from the command tree', async () => {
        const words = (line: string) =>
          execFileAsync('bash', [
            '-c',
            `source <("$0" "$1" completion bash) && complete -p wirewatch && COMP_WORDS=(${line}) && COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )) && _wirewatch && echo "\${COMPREPLY[*]}"`,
            process.execPath,
            cli,
          ]);
        const top = await words('wirewatch ""');
        expect(top.stdout.split('\n')[0]).toBe('complete -o default -F _wirewatch wirewatch');
        expect(top.stdout.split('\n')[1]!.split(' ')).toEqual(
          expect.arrayContaining([
            'vm',
            'watcher',
            'storage',
            'admin',
            'audit',
            'completion',
            'login',
          ]),
        );
        const line = async (l: string) => (await words(l)).stdout.split('\n')[1];
        expect(await line('wirewatch admin ""')).toBe('subscription token enroll-token help');
        expect(await line('wirewatch admin token create --r')).toBe('--role');
        expect(await line('wirewatch admin token create --role ""')).toBe(
          'Reader Contributor Owner',
        );
        expect(await line('wirewatch vm show -o t')).toBe('table tsv');
        expect(await line('wirewatch watcher delete --no')).toBe('--no-wait');
        expect(await line('wirewatch completion ""')).toBe('bash zsh');
      });

      it.skipIf(!hasZsh())(
        'completion zsh registers with compdef and completes the same tree',
        async () => {
          const { stdout } = await execFileAsync('zsh', [
            '-f',
            '-c',
            `autoload -Uz compinit && compinit -u -d "$3" && source <("$1" "$2" completion zsh) && print -r -- "$_comps[wirewatch]" &&
compadd() { [[ $1 == -a ]] && print -r -- "\${(P)2}" } &&
words=(wirewatch storage "") && CURRENT=3 && _wirewatch &&
words=(wirewatch admin token create --role "") && CURRENT=6 && _wirewatch`,
            'zsh',
            process.execPath,
            cli,
            path.join(root, 'zcompdump'),
          ]);
          expect(stdout.split('\n')).toEqual([
            '_wirewatch',
            'add list remove help',
            'Reader Contributor Owner',
            '',
          ]);
        },
      );
    });
  },
);

function hasZsh(): boolean {
  try {
    execFileSync('zsh', ['-fc', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function withoutWirewatchEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !(k in CLEAN_ENV)));
}
