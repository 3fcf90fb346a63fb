/**
 * `wirewatch capture …` as a user runs it: the BUILT binary, its own config dir and `wirewatch
 * login`, against a real server on loopback and the REAL agent (createAgent, tcpdump on a lab
 * namespace), Azurite behind a registered storage account. The agent's files on disk are the
 * reference for downloads; tshark reads what was downloaded.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, type Agent } from '../src/agent/agent.js';
import { startAzurite, type Azurite } from '../src/blob/azurite.js';
import {
  cli,
  freePort,
  runCli,
  runInTerminal,
  spawnInTerminal,
  type CliResult,
} from './lab/cli-process.js';
import {
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from './lab/control-plane.js';
import { isRoot, run } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { send, serve, type Server } from './lab/traffic.js';
import { tsharkRead } from './lab/tshark.js';

/** The CLI's environment: nothing from the test runner's own WIREWATCH_* settings. */
const clean = {
  WIREWATCH_SERVER: undefined,
  WIREWATCH_TOKEN: undefined,
  WIREWATCH_CA: undefined,
  WIREWATCH_SUBSCRIPTION: undefined,
  WIREWATCH_PROFILE: undefined,
  WIREWATCH_LOCATION: undefined,
  WIREWATCH_RESOURCE_GROUP: undefined,
  TZ: 'UTC',
};

const ESC = String.fromCharCode(27);

const COMMANDS = [
  'create',
  'show',
  'show-status',
  'list',
  'stop',
  'delete',
  'wait',
  'download',
] as const;

describe('wirewatch capture: help and usage errors', () => {
  let config: string;
  beforeAll(async () => {
    config = await mkdtemp(path.join(tmpdir(), 'ww-cli-capture-usage-'));
  });
  afterAll(async () => {
    if (config) await rm(config, { recursive: true, force: true });
  });
  const ww = (args: string[]) => runCli(args, { ...clean, XDG_CONFIG_HOME: config });

  it.each(COMMANDS)('capture %s --help explains it with an example', async (command) => {
    const r = await ww(['capture', command, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`Examples?:\\n\\s+wirewatch capture ${command}`));
    expect(r.stderr).toBe('');
  });

  const vm = ['capture', 'create', '-g', 'lab', '--vm', 'a', '-n', 'x', '--file-path', '/x.cap'];
  it.each([
    ['create without a target', ['capture', 'create', '-n', 'x'], /--vm VM, --vmss SCALE_SET/],
    ['create with two targets', [...vm, '--vmss', 'web'], /not --vm and --vmss/],
    ['show without --name', ['capture', 'show', '-l', 'w'], /--name/],
    ['an unknown output format', ['capture', 'list', '-l', 'w', '-o', 'yaml'], /yaml/],
    ['filters that are not JSON', [...vm, '--filters', '{'], /JSON array/],
    ['filters that are not an array', [...vm, '--filters', '{"protocol":"TCP"}'], /JSON array/],
    ['a negative capture size', [...vm, '--capture-size', '-5'], /--capture-size/],
    ['a time limit that is not a number', [...vm, '--time-limit', 'soon'], /--time-limit/],
    ['ring options without --continuous-capture', [...vm, '--file-count', '3'], /--continuous/],
    ['a bad --continuous-capture', [...vm, '--continuous-capture', 'maybe'], /true or false/],
    [
      'no place for the capture',
      ['capture', 'create', '-g', 'lab', '--vm', 'a', '-n', 'x'],
      /--storage-account, --file-path/,
    ],
    ['two names for download', ['capture', 'download', 'a', '-n', 'b', '-l', 'w'], /two names/],
    [
      'an unknown download format',
      ['capture', 'download', 'a', '-l', 'w', '--format', 'zip'],
      /zip/,
    ],
    ['an unknown --for', ['capture', 'wait', '-l', 'w', '-n', 'x', '--for', 'gone'], /gone/],
    ['a command without login', ['capture', 'list', '-l', 'westeurope'], /not logged in/],
  ])('%s exits 2 with a message naming it', async (_name, args, message) => {
    const r = await ww(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  // One error format, `wirewatch: CODE: message`, commander's usage errors included.
  const env = () => ({ ...clean, XDG_CONFIG_HOME: config });

  it.each([
    [
      "commander's missing option",
      ['capture', 'create', '--vm', 'a'],
      "InvalidCommandLine: required option '-n, --name <name>' not specified",
    ],
    [
      "commander's unknown option",
      ['capture', 'list', '-l', 'w', '--bogus'],
      "InvalidCommandLine: unknown option '--bogus'",
    ],
    [
      "commander's bad value",
      ['capture', 'list', '-l', 'w', '-o', 'yaml'],
      "InvalidCommandLine: option '-o, --output <format>' argument 'yaml' is invalid. Allowed choices are json, table, tsv.",
    ],
    ["commander's unknown command", ['nosuch'], "InvalidCommandLine: unknown command 'nosuch'"],
    [
      'stream, which writes pcap bytes, without -o',
      ['capture', 'stream', '-l', 'w', '-n', 'x', '-o', 'json'],
      "InvalidCommandLine: unknown option '-o'",
    ],
    [
      'help of a command that does not exist',
      ['help', 'capture', 'nosuch'],
      'InvalidCommandLine: wirewatch capture nosuch is not a command (wirewatch capture has: create, show, show-status, list, stop, delete, wait, download, stream)',
    ],
  ])('%s: exit 2 and one line', async (_name, args, line) => {
    const r = await ww(args);
    expect(r.stderr).toBe(`wirewatch: ${line}\n`);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
  });

  it('wirewatch help capture create shows the help of create', async () => {
    const help = await ww(['help', 'capture', 'create']);
    const direct = await ww(['capture', 'create', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: wirewatch capture create \[options\]\n/);
    expect(help.stdout).toBe(direct.stdout);
    // A reader that is gone before the help is written (`| true`): exit 0, no EPIPE trace.
    const gone = await run('sh', [
      '-c',
      '{ ( XDG_CONFIG_HOME="$1" "$2" "$3" help capture create 2>&3; echo "exit $?" >&3 ) | true; } 3>&1',
      'sh',
      config,
      process.execPath,
      cli,
    ]);
    expect(gone.stdout).toBe('exit 0\n');
  });

  it('pcap bytes on a terminal: download --file - refuses as stream does (same line, exit 2)', async () => {
    const line =
      'wirewatch: InvalidCommandLine: stdout is a terminal: pipe the pcap bytes into a reader (| tcpdump -r -, | wireshark -k -i -) or redirect them to a file\r\n';
    const download = await runInTerminal(
      ['capture', 'download', 'x', '-l', 'w', '--file', '-'],
      env(),
    );
    expect(download).toEqual({ code: 2, output: line });
    const stream = await runInTerminal(['capture', 'stream', 'x', '-l', 'w'], env());
    expect(stream).toEqual({ code: 2, output: line });
  });
});

/** queryStatus as the tests read it. */
interface Status {
  name: string;
  packetCaptureStatus: string;
  stopReason?: string;
  packetsCaptured: number;
  bytesCaptured: number;
  packetsDropped: number;
  uploadState?: string;
  files: string[];
}

/** A PacketCaptureResult as the tests read it. */
interface Capture {
  name: string;
  id: string;
  properties: Record<string, unknown> & {
    provisioningState: string;
    storageLocation: Record<string, string>;
  };
}

describe.skipIf(!isRoot)('wirewatch capture against a server and agent on the lab (root)', () => {
  let lab: Lab;
  let echo: Server;
  let azurite: Azurite;
  let t: TestServer;
  let tls: TestServer | undefined;
  let tenant: Tenant;
  let agent: Agent | undefined;
  let top: string;
  let config: string;
  let downloads: string;
  let sport = 52000;
  const L = 'westeurope';
  const at = ['-l', L];

  const captures = () => path.join(top, 'captures');
  const ww = (args: string[], env: Record<string, string | undefined> = {}) =>
    runCli(args, { ...clean, XDG_CONFIG_HOME: config, ...env });
  const json = <T>(r: CliResult): T => {
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as T;
  };
  /** A command that succeeded: exit 0 and nothing at all on stderr (not a terminal). */
  const ok = (r: CliResult) => {
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    return r;
  };
  /** A refusal: exit 1, nothing on stdout, one line on stderr with the code. */
  const refused = (r: CliResult, code: string) => {
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^wirewatch: ${code}: .+\\n$`));
  };
  const status = async (name: string) =>
    json<Status>(await ww(['capture', 'show-status', ...at, '-n', name]));
  /** `capture create` of `name` on a VM of group lab into `file`, and more options. */
  const createArgs = (vm: string, name: string, file: string, ...more: string[]) => [
    ...['capture', 'create', '-g', 'lab', '--vm', vm, '-n', name, '--file-path', file],
    ...more,
  ];
  /** The agent's refusal of a capture file that exists. */
  const fileTaken = (file: string) =>
    `filePath: cannot create a new capture file at ${file}; choose a file name that no file or capture on the VM uses`;

  async function tcp(bytes: number): Promise<void> {
    const [result] = await send(lab, lab.a, [
      { proto: 'tcp', src: lab.a.ipv4, sport: sport++, dst: lab.b.ipv4, dport: 80, bytes },
    ]);
    expect(result).toBeDefined();
  }
  async function udp(count: number, size: number): Promise<void> {
    const [result] = await send(lab, lab.a, [
      { proto: 'udp', src: lab.a.ipv4, sport: sport++, dst: lab.b.ipv4, dport: 5300, count, size },
    ]);
    expect(result!.echoed).toBe(count);
  }

  beforeAll(async () => {
    top = await mkdtemp(path.join(tmpdir(), 'ww-cli-capture-'));
    config = path.join(top, 'config');
    downloads = path.join(top, 'downloads');
    await mkdir(downloads);
    lab = await createLab();
    echo = await serve(lab, lab.b, [
      { proto: 'udp', host: lab.b.ipv4, port: 5300 },
      { proto: 'tcp', host: lab.b.ipv4, port: 80 },
    ]);
    azurite = await startAzurite({ dataDir: path.join(top, 'azurite') });
    t = await startTestServer();
    tenant = await createTenant(t, 'cli-capture');
    const registered = await t.call(
      'POST',
      `/api/v1/subscriptions/${tenant.subscriptionId}/storageAccounts`,
      {
        token: tenant.contributor,
        body: { name: 'logs', resourceGroup: 'lab', connectionString: azurite.connectionString },
      },
    );
    expect(registered.status, registered.text).toBe(201);
    agent = await createAgent({
      serverUrl: t.url,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: 'lab',
      name: 'host-a',
      location: L,
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: path.join(top, 'agent'),
      captureRoot: captures(),
      backoffMinMs: 50,
      backoffMaxMs: 500,
      progressIntervalMs: 300,
      ackWaitMs: 300,
    });
    const agentId = agent.agentId;
    await waitFor(
      () => Promise.resolve(t.server.hub.isConnected(agentId)),
      (c) => c,
    );
    // A subscription-scoped token: login makes its subscription the profile's default.
    const login = ok(await ww(['login', '--server', t.url, '--token', tenant.contributor]));
    expect(JSON.parse(login.stdout)).toMatchObject({ subscription: tenant.subscriptionId });
    ok(
      await ww([
        'login',
        '--server',
        t.url,
        '--token',
        tenant.reader,
        '--profile',
        'reader',
        '-o',
        'tsv',
      ]),
    );
    ok(await ww(['login', '--server', t.url, '--token', tenant.contributor]));
  });

  afterAll(async () => {
    try {
      await agent?.close();
      await t?.close();
      await tls?.close();
      await azurite?.close();
      await echo?.close();
    } finally {
      await lab?.close();
      if (top) await rm(top, { recursive: true, force: true });
    }
  });

  const webFile = () => path.join(captures(), 'web.cap');
  const webFilters = [{ protocol: 'TCP', remotePort: '80' }];

  it('create --wait maps the az options onto the capture and returns once it runs', async () => {
    const r = ok(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'host-a',
        '-n',
        'web',
        '--file-path',
        webFile(),
        '--filters',
        JSON.stringify(webFilters),
        '--capture-size',
        '0',
        '--capture-limit',
        '50000000',
        '--time-limit',
        '600',
        '--target-type',
        'AzureVM',
        '--wait',
      ]),
    );
    const capture = JSON.parse(r.stdout) as Capture;
    expect(capture.name).toBe('web');
    expect(capture.id).toMatch(
      /\/networkWatchers\/NetworkWatcher_westeurope\/packetCaptures\/web$/,
    );
    expect(capture.properties).toMatchObject({
      provisioningState: 'Succeeded',
      target: vmId(tenant.subscriptionId, 'lab', 'host-a'),
      targetType: 'AzureVM',
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 50000000,
      timeLimitInSeconds: 600,
      storageLocation: { filePath: webFile() },
      filters: webFilters,
    });
    expect((await status('web')).packetCaptureStatus).toBe('Running');
  });

  it('create with a storage account by name: storageId, the server-made storagePath, capture size; wait', async () => {
    const file = path.join(captures(), 'stored.cap');
    const created = json<Capture>(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        vmId(tenant.subscriptionId, 'lab', 'host-a'),
        '-n',
        'stored',
        '--storage-account',
        'logs',
        '--storage-path',
        'https://example.invalid/mine/x.cap',
        '--file-path',
        file,
        '--capture-size',
        '96',
        '--time-limit',
        '3',
        '--filters',
        '[{"protocol":"UDP","remotePort":"5300"}]',
      ]),
    );
    const storageId = `/subscriptions/${tenant.subscriptionId}/resourceGroups/lab/providers/Microsoft.Storage/storageAccounts/logs`;
    expect(created.properties).toMatchObject({
      bytesToCapturePerPacket: 96,
      timeLimitInSeconds: 3,
      storageLocation: { storageId, filePath: file },
    });
    const running = ok(await ww(['capture', 'wait', ...at, '-n', 'stored', '--for', 'running']));
    expect(['Running', 'Stopped']).toContain(
      (JSON.parse(running.stdout) as Status).packetCaptureStatus,
    );
    await udp(5, 400);
    const ended = JSON.parse(
      ok(await ww(['capture', 'wait', ...at, '-n', 'stored'])).stdout,
    ) as Status;
    expect(ended).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'TimeExceeded' });
    expect(ended.packetsCaptured).toBe(10);
    // storagePath is the server's: the blob URL in the account, never what the client sent.
    const shown = json<Capture>(await ww(['capture', 'show', ...at, '-n', 'stored']));
    expect(shown.properties.storageLocation.storagePath).toMatch(
      new RegExp(`^${escape(azurite.blobEndpoint)}/?network-watcher-logs/`),
    );
    // Every packet is cut to 96 bytes; the download (from the blob once uploaded) is the file.
    const out = path.join(downloads, 'stored.cap');
    ok(await ww(['capture', 'download', 'stored', ...at, '--file', out]));
    expect((await readFile(out)).equals(await readFile(file))).toBe(true);
    const packets = await tsharkRead(out);
    expect(packets).toHaveLength(10);
    expect(packets.every((p) => p.capturedLength <= 96)).toBe(true);
  });

  it('continuous capture: ring options, --file-path as localPath, storage account by id; tar and merged downloads', async () => {
    const storageId = `/subscriptions/${tenant.subscriptionId}/resourceGroups/lab/providers/Microsoft.Storage/storageAccounts/logs`;
    const local = path.join(captures(), 'ring.cap');
    const created = json<Capture>(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'host-a',
        '-n',
        'ring',
        '--continuous-capture',
        '--file-count',
        '10',
        '--file-size',
        '20000',
        '--session-time-limit',
        '120',
        '--file-path',
        local,
        '--storage-account',
        storageId,
        '--filters',
        '[{"protocol":"UDP","remotePort":"5300"}]',
        '--wait',
      ]),
    );
    expect(created.properties).toMatchObject({
      provisioningState: 'Succeeded',
      continuousCapture: true,
      captureSettings: { fileCount: 10, fileSizeInBytes: 20000, sessionTimeLimitInSeconds: 120 },
      storageLocation: { localPath: local, storageId },
    });
    expect(created.properties.storageLocation.filePath).toBeUndefined();
    await udp(60, 500);
    const stopped = json<Status>(await ww(['capture', 'stop', ...at, '-n', 'ring', '--wait']));
    expect(stopped).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
    });
    expect(stopped.files.length).toBeGreaterThan(2);

    const tar = path.join(downloads, 'ring.tar');
    const tarred = json<{ file: string; format: string; bytes: number }>(
      await ww(['capture', 'download', ...at, '-n', 'ring', '--format', 'tar', '--file', tar]),
    );
    expect(tarred).toMatchObject({ file: tar, format: 'tar', bytes: (await stat(tar)).size });
    const unpacked = path.join(downloads, 'ring-files');
    await mkdir(unpacked);
    await run('tar', ['-xf', tar, '-C', unpacked]);
    // The tar holds the ring's files in order, under their names where they are read from
    // (the agent's files, or the blobs once uploaded): _1, _2, … before the extension.
    const order = (name: string) => Number(/_(\d+)\.cap$/.exec(name)?.[1]);
    const entries = (await readdir(unpacked)).sort((a, b) => order(a) - order(b));
    const files = [...stopped.files].sort((a, b) => order(a) - order(b));
    expect(entries).toHaveLength(files.length);
    let total = 0;
    for (const [i, f] of files.entries()) {
      const entry = await readFile(path.join(unpacked, entries[i]!));
      expect(entry.equals(await readFile(f)), entries[i]).toBe(true);
      total += (await tsharkRead(f)).length;
    }
    expect(total).toBe(120);

    // The default: one pcap, the files merged by time (written where --file does not say: NAME.cap).
    const merged = ok(await runIn(downloads, ['capture', 'download', ...at, '-n', 'ring']));
    expect(JSON.parse(merged.stdout)).toMatchObject({ file: 'ring.cap', format: 'pcap' });
    expect(await tsharkRead(path.join(downloads, 'ring.cap'))).toHaveLength(120);
  });

  /** Runs the CLI in another working directory. */
  function runIn(cwd: string, args: string[]): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [cli, ...args], {
        cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: Object.fromEntries(
          Object.entries({ ...process.env, ...clean, XDG_CONFIG_HOME: config }).filter(
            ([, v]) => v !== undefined,
          ),
        ),
      });
      const out: Buffer[] = [];
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', reject);
      child.once('close', (code) => {
        resolve({ code, stdout: Buffer.concat(out).toString(), stderr });
      });
    });
  }

  it('show-status, show and list in json, table and tsv', async () => {
    await tcp(3e6);
    await waitFor(
      () => status('web'),
      (s) => s.bytesCaptured > 3e6,
    );
    const s = json<Status>(await ww(['capture', 'show-status', ...at, '-n', 'web']));
    expect(s).toMatchObject({ name: 'web', packetCaptureStatus: 'Running', packetsDropped: 0 });
    expect(s.bytesCaptured).toBeGreaterThan(3e6);

    const table = ok(await ww(['capture', 'show-status', ...at, '-n', 'web', '-o', 'table']));
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]!.split(/\s+/)).toEqual([
      'Name',
      'Status',
      'StopReason',
      'Packets',
      'Bytes',
      'Drops',
      'Upload',
      'Error',
    ]);
    expect(lines[1]).toMatch(/^-+( +-+)+$/);
    // Bytes for a person (over 3 MB: MiB to one decimal), exact in tsv below.
    expect(lines[2]).toMatch(/^web +Running +\d+ +\d+\.\d MiB +0$/);

    const tsv = ok(await ww(['capture', 'show-status', ...at, '-n', 'web', '-o', 'tsv']));
    const [name, state, stopReason, packets, bytes, drops, upload, error] = tsv.stdout
      .replace(/\n$/, '')
      .split('\t');
    expect([name, state, stopReason, drops, upload, error]).toEqual([
      'web',
      'Running',
      '',
      '0',
      '',
      '',
    ]);
    expect(Number(packets)).toBeGreaterThan(20);
    expect(Number(bytes)).toBeGreaterThan(3e6);

    const shown = json<Capture>(await ww(['capture', 'show', ...at, '-n', 'web']));
    expect(shown.properties.storageLocation).toEqual({ filePath: webFile() });
    const showTable = ok(await ww(['capture', 'show', ...at, '-n', 'web', '-o', 'table']));
    // The unit in the header; the tsv below has no header and the same values.
    const captureHeader = [
      'Name',
      'Status',
      'StopReason',
      'Target',
      'TimeLimit (s)',
      'File',
      'StorageAccount',
    ];
    expect(showTable.stdout.split('\n')[0]!.split(/\s{2,}/)).toEqual(captureHeader);
    expect(showTable.stdout.split('\n')[2]).toMatch(
      new RegExp(`^web +Running +host-a +600 +${webFile()}$`),
    );
    const showTsv = ok(await ww(['capture', 'show', ...at, '-n', 'web', '-o', 'tsv']));
    expect(showTsv.stdout).toBe(`web\tRunning\t\thost-a\t600\t${webFile()}\t\n`);
    // json: Azure's PacketCaptureResult, with the status wirewatch's $expand=status adds.
    expect(shown.properties.status).toMatchObject({ name: 'web', packetCaptureStatus: 'Running' });

    const list = json<Capture[]>(await ww(['capture', 'list', '-l', 'West Europe']));
    expect(list.map((c) => c.name).sort()).toEqual(['ring', 'stored', 'web']);
    const listTsv = ok(await ww(['capture', 'list', ...at, '-o', 'tsv']));
    expect(
      listTsv.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split('\t')[0])
        .sort(),
    ).toEqual(['ring', 'stored', 'web']);
    // One row per capture with its state and stop reason; a ring shows the files it has (not the
    // stem its localPath names) and the session limit that ends it.
    const listTable = ok(await ww(['capture', 'list', ...at, '-o', 'table']));
    const rows = listTable.stdout.trimEnd().split('\n');
    expect(rows).toHaveLength(5);
    expect(rows[0]!.split(/\s{2,}/)).toEqual(captureHeader);
    const ringFiles = (await status('ring')).files;
    expect(ringFiles.length).toBeGreaterThan(2);
    expect(ringFiles.every((f) => /\/ring_\d+\.cap$/.test(f))).toBe(true);
    expect(rows.map((r) => r.split(/ +/))).toEqual(
      expect.arrayContaining([
        ['ring', 'Stopped', 'ManualIntervention', 'host-a', '120', ringFiles.join(','), 'logs'],
        [
          'stored',
          'Stopped',
          'TimeExceeded',
          'host-a',
          '3',
          path.join(captures(), 'stored.cap'),
          'logs',
        ],
        ['web', 'Running', 'host-a', '600', webFile()],
      ]),
    );
  });

  it('-l may be left out: the only location, WIREWATCH_LOCATION, a profile default; several locations are named', async () => {
    const names = (r: CliResult) =>
      json<Capture[]>(r)
        .map((c) => c.name)
        .sort();
    // One location in the subscription: it is the default.
    expect(names(await ww(['capture', 'list']))).toEqual(['ring', 'stored', 'web']);
    expect(json<Status>(await ww(['capture', 'show-status', '-n', 'web'])).name).toBe('web');

    // A second location: the CLI does not guess, and says which locations exist.
    ok(await ww(['watcher', 'create', '-g', 'lab', '-n', 'nw-east', '-l', 'eastus']));
    try {
      const several = await ww(['capture', 'list', '-o', 'table']);
      expect({ code: several.code, stdout: several.stdout, stderr: several.stderr }).toEqual({
        code: 2,
        stdout: '',
        stderr: `wirewatch: InvalidCommandLine: -l/--location is required: subscription '${tenant.subscriptionId}' has network watchers in 2 locations (eastus, westeurope); pass -l LOCATION, or set a default: wirewatch configure --defaults location=LOCATION\n`,
      });
      expect((await ww(['capture', 'show', '-n', 'web'])).code).toBe(2);
      expect(
        json<Capture[]>(await ww(['capture', 'list'], { WIREWATCH_LOCATION: 'eastus' })),
      ).toEqual([]);

      // A profile default (as az configure --defaults), which the environment overrides.
      const set = json<{ name: string; value: string; source: string }[]>(
        await ww(['configure', '--defaults', 'location=westeurope', 'group=lab']),
      );
      expect(set).toEqual([
        { name: 'location', value: 'westeurope', source: 'profile default' },
        { name: 'group', value: 'lab', source: 'profile default' },
      ]);
      expect(names(await ww(['capture', 'list']))).toEqual(['ring', 'stored', 'web']);
      expect(json<{ name: string }>(await ww(['vm', 'show', '-n', 'host-a'])).name).toBe('host-a');
      expect(
        json<Capture[]>(await ww(['capture', 'list'], { WIREWATCH_LOCATION: 'eastus' })),
      ).toEqual([]);
      const listed = ok(
        await ww(['configure', '--list-defaults', '-o', 'tsv'], { WIREWATCH_LOCATION: 'eastus' }),
      );
      expect(listed.stdout).toBe(
        'location\teastus\tWIREWATCH_LOCATION\ngroup\tlab\tprofile default\n',
      );
      // An empty value clears a default.
      expect(json(await ww(['configure', '--defaults', 'location=', 'group=']))).toEqual([]);
      expect((await ww(['vm', 'show', '-n', 'host-a'])).stderr).toMatch(
        /^wirewatch: InvalidCommandLine: -g\/--resource-group and -n\/--name are required \(or --ids\); -g may come from a default: wirewatch configure --defaults group=RG\n$/,
      );
      const bad = await ww(['configure', '--defaults', 'region=eastus']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/region=eastus.*expected location=VALUE or group=VALUE/);

      // login -l/-g saves them in a new profile.
      const other = path.join(top, 'config-defaults');
      const login = { XDG_CONFIG_HOME: other };
      ok(
        await ww(
          ['login', '--server', t.url, '--token', tenant.contributor, '-l', L, '-g', 'lab'],
          login,
        ),
      );
      expect(names(await ww(['capture', 'list'], login))).toEqual(['ring', 'stored', 'web']);
      expect(json<{ name: string }>(await ww(['vm', 'show', '-n', 'host-a'], login)).name).toBe(
        'host-a',
      );
    } finally {
      ok(await ww(['watcher', 'delete', '-g', 'lab', '-n', 'nw-east']));
    }
    expect(names(await ww(['capture', 'list']))).toEqual(['ring', 'stored', 'web']);
  });

  it('stop --wait returns once the capture has stopped and prints its status', async () => {
    const r = ok(await ww(['capture', 'stop', ...at, '-n', 'web', '--wait']));
    const s = JSON.parse(r.stdout) as Status;
    expect(s).toMatchObject({ packetCaptureStatus: 'Stopped', stopReason: 'ManualIntervention' });
    expect(s.files).toEqual([webFile()]);
    // Stopping again: already ended, the same answer in tsv.
    const again = ok(await ww(['capture', 'stop', ...at, '-n', 'web', '-o', 'tsv']));
    expect(again.stdout).toMatch(/^web\tStopped\tManualIntervention\t\d+\t\d+\t0\t\t\n$/);
    // wait on a stopped capture returns at once.
    expect(
      json<Status>(await ww(['capture', 'wait', ...at, '-n', 'web'])).packetCaptureStatus,
    ).toBe('Stopped');
  });

  it("download: the agent's file byte for byte, readable by tshark; to a file or to stdout", async () => {
    const local = await readFile(webFile());
    expect(local.length).toBeGreaterThan(3e6);
    const out = path.join(downloads, 'web.cap');
    const r = ok(await ww(['capture', 'download', 'web', ...at, '--file', out]));
    expect(JSON.parse(r.stdout)).toEqual({
      name: 'web',
      file: out,
      format: 'pcap',
      bytes: local.length,
      resumedFrom: 0,
    });
    expect((await readFile(out)).equals(local)).toBe(true);
    await expect(stat(`${out}.part`)).rejects.toThrow();
    const packets = await tsharkRead(out);
    expect(packets.length).toBeGreaterThan(20);
    expect(packets.every((p) => p.proto === 'tcp')).toBe(true);

    const piped = await ww(['capture', 'download', '-n', 'web', ...at, '--file', '-']);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toBe('');
    expect(piped.stdoutBytes.equals(local)).toBe(true);
    // A reader that quits first (`| head -c 100`): exit 0, nothing on stderr (no EPIPE trace).
    const early = await run('sh', [
      '-c',
      '{ ( XDG_CONFIG_HOME="$1" "$2" "$3" capture download -n web -l "$4" --file - 2>&3; echo "exit $?" >&3 ) | head -c 100 >/dev/null; } 3>&1',
      'sh',
      config,
      process.execPath,
      cli,
      L,
    ]);
    expect(early.stdout).toBe('exit 0\n');

    const table = ok(await ww(['capture', 'download', 'web', ...at, '--file', out, '-o', 'table']));
    const mib = (local.length / 1024 ** 2).toFixed(1);
    expect(table.stdout.split('\n')[2]).toMatch(new RegExp(`^web +${out} +${mib} MiB +0 B$`));
    const tsv = ok(await ww(['capture', 'download', 'web', ...at, '--file', out, '-o', 'tsv']));
    expect(tsv.stdout).toBe(`web\t${out}\t${local.length}\t0\n`);
  });

  async function lastDownloadAudit(): Promise<{ detail: { range: string | null } }> {
    const r = await t.call('GET', `/api/v1/subscriptions/${tenant.subscriptionId}/audit?$top=20`);
    expect(r.status, r.text).toBe(200);
    const entries = (r.body as { value: { action: string; detail: { range: string | null } }[] })
      .value;
    const entry = entries.find((e) => e.action === 'packetCapture.download');
    expect(entry).toBeDefined();
    return entry!;
  }

  it('download resumes from FILE.part with a Range request', async () => {
    const local = await readFile(webFile());
    const out = path.join(downloads, 'resume.cap');
    const kept = 1_000_000;
    await writeFile(`${out}.part`, local.subarray(0, kept));
    const r = ok(await ww(['capture', 'download', 'web', ...at, '--file', out]));
    expect(JSON.parse(r.stdout)).toMatchObject({ bytes: local.length, resumedFrom: kept });
    expect((await readFile(out)).equals(local)).toBe(true);
    expect((await lastDownloadAudit()).detail.range).toBe(`bytes=${kept}-${local.length - 1}`);
    await expect(stat(`${out}.part`)).rejects.toThrow();

    // A part that already holds the whole file (a run stopped before its rename) is complete.
    const whole = path.join(downloads, 'whole.cap');
    await writeFile(`${whole}.part`, local);
    const done = ok(await ww(['capture', 'download', 'web', ...at, '--file', whole]));
    expect(JSON.parse(done.stdout)).toMatchObject({
      bytes: local.length,
      resumedFrom: local.length,
    });
    expect((await readFile(whole)).equals(local)).toBe(true);

    // A part longer than the file cannot be continued: the download starts over.
    const stale = path.join(downloads, 'stale.cap');
    await writeFile(`${stale}.part`, Buffer.alloc(local.length + 10, 7));
    const over = ok(await ww(['capture', 'download', 'web', ...at, '--file', stale]));
    expect(JSON.parse(over.stdout)).toMatchObject({ bytes: local.length, resumedFrom: 0 });
    expect((await readFile(stale)).equals(local)).toBe(true);
  });

  it('a download cut off mid-transfer exits 3, keeps FILE.part, and the next run resumes it', async () => {
    const local = await readFile(webFile());
    const cut = await cuttingProxy(new URL(t.url), 1_500_000);
    const out = path.join(downloads, 'cut.cap');
    try {
      const r = await ww(['capture', 'download', 'web', ...at, '--file', out], {
        WIREWATCH_SERVER: cut.url,
      });
      expect(r.code, r.stderr).toBe(3);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(
        /^wirewatch: ServerUnreachable: download interrupted after \d+ bytes \(kept in .+\.part\)/,
      );
    } finally {
      await cut.close();
    }
    const partial = (await stat(`${out}.part`)).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(local.length);
    expect(local.subarray(0, partial).equals(await readFile(`${out}.part`))).toBe(true);
    const r = ok(await ww(['capture', 'download', 'web', ...at, '--file', out]));
    expect(JSON.parse(r.stdout)).toMatchObject({ bytes: local.length, resumedFrom: partial });
    expect((await readFile(out)).equals(local)).toBe(true);
    expect((await lastDownloadAudit()).detail.range).toBe(`bytes=${partial}-${local.length - 1}`);
    expect(await tsharkRead(out)).toHaveLength((await tsharkRead(webFile())).length);
  });

  it('on a terminal: a live line while waiting and a progress bar while downloading', async () => {
    ok(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'host-a',
        '-n',
        'tty',
        '--file-path',
        path.join(captures(), 'tty.cap'),
        '--time-limit',
        '3',
        '--wait',
      ]),
    );
    await udp(5, 100);
    const waited = await inTerminal(['capture', 'wait', ...at, '-n', 'tty', '-o', 'tsv']);
    // The live line rewrites itself: carriage return, erase line (ESC [ K), the status.
    expect(waited).toMatch(
      new RegExp(
        `\r${ESC}\\[Ktty: Running {2}\\d:\\d\\d {2}packets \\d+ {2}[\\d.]+ (B|KiB) {2}drops 0`,
      ),
    );
    expect(waited).toMatch(/tty\tStopped\tTimeExceeded\t/);
    const file = path.join(downloads, 'tty.cap');
    const downloaded = await inTerminal(['capture', 'download', 'web', ...at, '--file', file]);
    expect(downloaded).toMatch(/\[#+\] 100% {2}[\d.]+ MiB \/ [\d.]+ MiB {2}[\d.]+ \S+\/s/);
  });

  /** Runs the CLI under `script`, which gives it a terminal; returns what the terminal showed. */
  async function inTerminal(args: string[]): Promise<string> {
    const r = await runInTerminal(args, { ...clean, XDG_CONFIG_HOME: config, COLUMNS: '200' });
    if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.output}`);
    return r.output;
  }

  /** `script` running the CLI in a terminal; with stdin 'pipe', what is written to it is typed. */
  function inTerminalProcess(args: string[], stdin: 'ignore' | 'pipe') {
    return spawnInTerminal(args, { ...clean, XDG_CONFIG_HOME: config, COLUMNS: '200' }, stdin);
  }

  it('delete --wait: a running capture is stopped and removed; nothing on stdout', async () => {
    ok(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'host-a',
        '-n',
        'doomed',
        '--file-path',
        path.join(captures(), 'doomed.cap'),
        '--wait',
      ]),
    );
    const r = ok(await ww(['capture', 'delete', ...at, '-n', 'doomed', '--wait']));
    expect(r.stdout).toBe('');
    refused(await ww(['capture', 'show', ...at, '-n', 'doomed']), 'ResourceNotFound');
    const stopped = ok(
      await ww(['capture', 'delete', ...at, '-n', 'web', '--wait', '-o', 'table']),
    );
    expect(stopped.stdout).toBe('');
    const names = json<Capture[]>(await ww(['capture', 'list', ...at])).map((c) => c.name);
    expect(names).not.toContain('web');
    expect(names).not.toContain('doomed');
  });

  it('refusals exit 1 with the code and message on one stderr line', async () => {
    const create = ['capture', 'create', '-g', 'lab', '--vm', 'host-a'];
    refused(await ww(['capture', 'show', ...at, '-n', 'nosuch']), 'ResourceNotFound');
    refused(await ww(['capture', 'list', '-l', 'northpole']), 'ResourceNotFound');
    refused(
      await ww([
        ...create,
        '-n',
        'x',
        '--file-path',
        path.join(captures(), 'x.cap'),
        '--filters',
        '[{"localPort":"80-"}]',
      ]),
      'InvalidFilter',
    );
    refused(await ww([...create, '-n', 'x', '--file-path', '/etc/x.cap']), 'InvalidCapturePath');
    // The server's refusal names the option typed, not the field (properties.timeLimitInSeconds).
    const inWords = async (args: string[], line: string) => {
      const r = await ww([
        ...create,
        '-n',
        'x',
        '--file-path',
        path.join(captures(), 'x.cap'),
        ...args,
      ]);
      expect(r.stderr).toBe(`wirewatch: ${line}\n`);
      expect(r.code).toBe(1);
    };
    await inWords(
      ['--time-limit', '20000'],
      'InvalidCaptureLimit: --time-limit 20000 is above the maximum 18000',
    );
    await inWords(
      ['--filters', '[{"protocol":"UDP","localPort":53}]'],
      'InvalidRequestContent: --filters [0].localPort: 53 is a number; write it as a string, "53"',
    );
    await inWords(
      ['--continuous-capture', '--file-count', '10001'],
      'InvalidCaptureLimit: --file-count 10001 is above the maximum 10000',
    );
    refused(
      await ww([...create, '-n', 'x', '--storage-account', 'nosuch']),
      'StorageAccountNotFound',
    );
    refused(
      await ww([
        ...create,
        '-n',
        'x',
        '--file-path',
        path.join(captures(), 'x.cap'),
        '--include',
        '0',
        '1',
      ]),
      'InvalidRequestContent',
    );
    refused(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'set1',
        '-l',
        L,
        '-n',
        'x',
        '--target-type',
        'AzureVMSS',
        '--file-path',
        path.join(captures(), 'x.cap'),
      ]),
      // Read first, as a VM is: the lab has no scale set.
      'ResourceNotFound',
    );
    refused(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'nosuch',
        '-n',
        'x',
        '--file-path',
        '/var/captures/x.cap',
      ]),
      'ResourceNotFound',
    );
    // A Reader may look but not create.
    refused(
      await ww([
        ...create,
        '-n',
        'x',
        '--file-path',
        path.join(captures(), 'x.cap'),
        '--profile',
        'reader',
      ]),
      'AuthorizationFailed',
    );
    expect(ok(await ww(['capture', 'list', ...at, '--profile', 'reader'])).stdout).toMatch(
      /"ring"/,
    );
    // Another subscription is not there at all.
    refused(
      await ww([
        'capture',
        'list',
        ...at,
        '--subscription',
        '00000000-0000-0000-0000-000000000000',
      ]),
      'SubscriptionNotFound',
    );
  });

  it('a capture into a storage account only shows no file in tables: its spool is gone once uploaded', async () => {
    const args = ['capture', 'create', '-g', 'lab', '--vm', 'host-a', '-n', 'blobonly'];
    ok(await ww([...args, '--storage-account', 'logs', '--time-limit', '1', '--wait']));
    await waitFor(
      async () => json<Status>(await ww(['capture', 'show-status', ...at, '-n', 'blobonly'])),
      (s) => s.uploadState === 'Completed',
      30_000,
    );
    // json keeps what the server says; the File column does not name a removed spool file.
    const listed = ok(await ww(['capture', 'list', ...at, '-o', 'tsv'])).stdout.split('\n');
    expect(listed).toContain('blobonly\tStopped\tTimeExceeded\thost-a\t1\t\tlogs');
    const shown = ok(await ww(['capture', 'show', ...at, '-n', 'blobonly', '-o', 'table']));
    expect(shown.stdout.split('\n')[2]).toMatch(
      /^blobonly +Stopped +TimeExceeded +host-a +1 +logs$/,
    );
  });

  it('a capture that cannot start: create --wait and wait exit 1 with its error', async () => {
    // An existing file is never overwritten: the agent refuses to start the capture.
    const taken = path.join(captures(), 'taken.cap');
    await writeFile(taken, 'already here');
    const create = await ww(createArgs('host-a', 'taken', taken, '--wait'));
    refused(create, 'LocalFileFailed');
    const refusal = fileTaken(taken);
    // create names the option typed; the status (wait, show-status) keeps the agent's words.
    expect(create.stderr).toBe(
      `wirewatch: LocalFileFailed: ${refusal.replace(/^filePath:/, '--file-path:')}\n`,
    );
    const waited = await ww(['capture', 'wait', ...at, '-n', 'taken', '-o', 'tsv']);
    expect(waited.code).toBe(1);
    expect(waited.stdout).toBe(`taken\tError\tError\t0\t0\t0\t\tLocalFileFailed: ${refusal}\n`);
    expect(waited.stderr).toBe(`wirewatch: LocalFileFailed: ${refusal}\n`);
    // The table says why, not only Error.
    const table = ok(await ww(['capture', 'show-status', ...at, '-n', 'taken', '-o', 'table']));
    expect(table.stdout.split('\n')[2]).toMatch(
      new RegExp(`^taken +Error +Error +0 +0 B +0 +LocalFileFailed: ${escape(refusal)}$`),
    );

    // Without --wait, create still watches the start for a moment and reports the failure.
    const again = path.join(captures(), 'taken-again.cap');
    await writeFile(again, 'already here');
    const quick = await ww(createArgs('host-a', 'taken-again', again, '-o', 'table'));
    expect(quick.code).toBe(1);
    expect(quick.stdout).toBe('');
    expect(quick.stderr).toBe(
      `wirewatch: LocalFileFailed: ${fileTaken(again).replace(/^filePath:/, '--file-path:')}\n`,
    );
    const listed = ok(await ww(['capture', 'list', ...at, '-o', 'tsv'])).stdout.split('\n');
    expect(listed).toContain(`taken-again\tError\tError\thost-a\t18000\t${again}\t`);
  });

  it('Ctrl-C during capture wait ends the live line and says how to stop the capture; stop without --wait says it is stopping', async () => {
    ok(await ww(createArgs('host-a', 'ongoing', path.join(captures(), 'ongoing.cap'), '--wait')));
    const { code, shown } = await interruptInTerminal(
      ['capture', 'wait', ...at, '-n', 'ongoing'],
      `${ESC}[Kongoing: Running`,
    );
    expect(code).toBe(130);
    // The live line, then erased (CR, ESC [ K), then the notice on a line of its own.
    expect(shown).toMatch(
      new RegExp(
        `ongoing: Running[^\r]*\r${ESC}\\[Kwirewatch: stopped waiting; packet capture 'ongoing' keeps running\\. Stop it with: wirewatch capture stop -l westeurope -n ongoing\r\n$`,
      ),
    );
    expect((await status('ongoing')).packetCaptureStatus).toBe('Running');

    // stop without --wait: not "Running" as if nothing happened.
    const stop = await ww(['capture', 'stop', ...at, '-n', 'ongoing', '-o', 'tsv']);
    expect(stop.code, stop.stderr).toBe(0);
    const state = stop.stdout.split('\t')[1];
    expect(['Stopping', 'Stopped']).toContain(state);
    // (Stopped when the agent was quicker than the CLI's next request: then there is no notice.)
    expect(stop.stderr).toBe(
      state === 'Stopping'
        ? "wirewatch: packet capture 'ongoing' is stopping; to return once it has stopped: wirewatch capture wait -l westeurope -n ongoing\n"
        : '',
    );
    expect(json<Status>(await ww(['capture', 'wait', ...at, '-n', 'ongoing']))).toMatchObject({
      packetCaptureStatus: 'Stopped',
      stopReason: 'ManualIntervention',
    });
    ok(await ww(['capture', 'delete', ...at, '-n', 'ongoing', '--wait']));
  });

  it('create without --wait on a VM whose agent is away: printed as it is, and how to see it start', async () => {
    // A second VM, enrolled and then gone: its captures cannot start until it is back.
    const away = await createAgent({
      serverUrl: t.url,
      enrollToken: tenant.enrollToken,
      subscriptionId: tenant.subscriptionId,
      resourceGroup: 'lab',
      name: 'host-b',
      location: L,
      interface: lab.b.iface,
      netns: lab.b.netns,
      dataDir: path.join(top, 'agent-b'),
      captureRoot: path.join(top, 'captures-b'),
    });
    const awayId = away.agentId;
    await away.close();
    await waitFor(
      () => Promise.resolve(t.server.hub.isConnected(awayId)),
      (c) => !c,
    );
    const file = path.join(top, 'captures-b', 'later.cap');
    const r = await ww(createArgs('host-b', 'later', file, '-o', 'tsv'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`later\tUnknown\t\thost-b\t18000\t${file}\t\n`);
    expect(r.stderr).toBe(
      "wirewatch: packet capture 'later' has not started yet; to see it start: wirewatch capture wait -l westeurope -n later --for running\n",
    );
    ok(await ww(['capture', 'delete', ...at, '-n', 'later']));
  });

  it('delete of a name that does not exist says so on stderr and exits 0, as delete does', async () => {
    const r = await ww(['capture', 'delete', ...at, '-n', 'never-made']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      "wirewatch: packet capture 'never-made' does not exist in location 'westeurope'; nothing was deleted\n",
    );
  });

  /**
   * Runs the CLI in a terminal and presses Ctrl-C (the terminal's interrupt character, so the
   * kernel sends SIGINT to the CLI) once the terminal shows `when`.
   */
  async function interruptInTerminal(
    args: string[],
    when: string,
  ): Promise<{ code: number | null; shown: string }> {
    const child = inTerminalProcess(args, 'pipe');
    let shown = '';
    let pressed = false;
    child.stdout!.on('data', (d: Buffer) => {
      shown += d.toString();
      if (!pressed && shown.includes(when)) {
        pressed = true;
        child.stdin!.write('\x03');
      }
    });
    child.stderr!.on('data', (d: Buffer) => (shown += d.toString()));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    return { code, shown };
  }

  it('a capture still running cannot be downloaded yet (exit 1), and wait --timeout gives up (exit 1)', async () => {
    ok(
      await ww([
        'capture',
        'create',
        '-g',
        'lab',
        '--vm',
        'host-a',
        '-n',
        'long',
        '--file-path',
        path.join(captures(), 'long.cap'),
        '--wait',
      ]),
    );
    refused(
      await ww(['capture', 'download', 'long', ...at, '--file', path.join(downloads, 'long.cap')]),
      'CaptureStillRunning',
    );
    const r = await ww(['capture', 'wait', ...at, '-n', 'long', '--timeout', '1', '-o', 'tsv']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^long\tRunning\t/);
    expect(r.stderr).toMatch(
      /^wirewatch: WaitTimedOut: timed out after 1 s: packet capture 'long' is Running\n$/,
    );
    ok(await ww(['capture', 'delete', ...at, '-n', 'long', '--wait']));
  });

  it('exits 3 when the server cannot be reached or its certificate is not trusted', async () => {
    const port = await freePort();
    const down = await ww(['capture', 'list', ...at], {
      WIREWATCH_SERVER: `http://127.0.0.1:${port}`,
    });
    expect(down.code).toBe(3);
    expect(down.stdout).toBe('');
    expect(down.stderr).toMatch(
      /^wirewatch: ServerUnreachable: cannot reach http:\/\/127\.0\.0\.1:\d+: .+\n$/,
    );

    // https:// to a server that speaks plain HTTP: said so, without OpenSSL's text.
    const http = new URL(t.url);
    const wrongScheme = await ww(['capture', 'list', ...at], {
      WIREWATCH_SERVER: `https://${http.host}`,
    });
    expect(wrongScheme.stderr).toBe(
      `wirewatch: TlsFailure: https://${http.host} answered in plain HTTP, not TLS: this server speaks HTTP; use http://${http.host}\n`,
    );
    expect(wrongScheme.code).toBe(3);

    tls = await startTestServer({ tls: 'self-signed' });
    const untrusted = await ww(['capture', 'show', ...at, '-n', 'web'], {
      WIREWATCH_SERVER: tls.url,
    });
    expect(untrusted.code).toBe(3);
    expect(untrusted.stdout).toBe('');
    expect(untrusted.stderr).toMatch(
      /^wirewatch: TlsFailure: TLS failure talking to https:\/\/.+\n$/,
    );
  });
});

/** `text` as a literal in a RegExp. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A TCP proxy to `target` that cuts every connection once it has passed `limit` bytes from the
 * server: a download broken off mid-transfer, for real.
 */
async function cuttingProxy(
  target: URL,
  limit: number,
): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: NetServer = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    sockets.add(client).add(upstream);
    let passed = 0;
    client.on('data', (d: Buffer) => upstream.write(d));
    upstream.on('data', (d: Buffer) => {
      if (passed >= limit) return;
      const room = limit - passed;
      passed += d.length;
      client.write(d.length > room ? d.subarray(0, room) : d);
      if (passed >= limit) {
        client.end();
        upstream.destroy();
      }
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('no proxy address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
