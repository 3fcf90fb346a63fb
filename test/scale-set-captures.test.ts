/**
 * Captures on a scale set, through public entry points only: built `wirewatch agent` binaries
 * as instances 0, 1 and 2 of scale set `web` (each on its own lab namespace, with its own traffic
 * peer), a plain VM beside them, a real server on loopback with Azurite behind a storage account,
 * and the built CLI. What each instance saw is checked by tshark against what the test sent to
 * it: per instance in the merged pcapng (its interface named `web_{id}`), and nothing from the
 * instances left out. Then an instance offline from the start, one killed with SIGKILL while the
 * capture runs, and one that enrolls mid-capture and joins it.
 *
 * Each scale-set capture goes to the storage account only: the instances share this machine's
 * disk, so one --file-path would be one file for all of them (on real hosts it is one each).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../src/blob/azurite.js';
import { CLEAN_ENV, json, tsv, usage } from './lab/cli-output.js';
import {
  agentArgs,
  launch,
  runCli,
  stopProcess,
  type CliProcess,
  type CliResult,
} from './lab/cli-process.js';
import {
  API,
  capturePath,
  createTenant,
  registerStorageAccount,
  startTestServer,
  waitFor,
  type Tenant,
  type TestServer,
} from './lab/control-plane.js';
import { isRoot, runEveryStep } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { send, serve, type Server } from './lab/traffic.js';
import { tsharkFieldLines } from './lab/tshark.js';

const RG = 'lab';
const L = 'westeurope';
const UDP = JSON.stringify([{ protocol: 'UDP' }]);
/** The port instance `i` echoes on (the plain VM: 41009); the filter keeps only UDP. */
const portOf = (instance: number | 'plain') => 41000 + (instance === 'plain' ? 9 : instance);
const INSTANCE_HEADERS = ['InstanceId', 'Status', 'StopReason', 'Packets', 'Bytes', 'Drops'];

/** queryStatus with wirewatch's `instances` extension (docs/api.md). */
interface Status {
  packetCaptureStatus: string;
  stopReason?: string;
  packetsCaptured: number;
  instances: {
    instanceId: string;
    status: string;
    stopReason?: string;
    errors?: { code: string; message: string }[];
    packets: number;
    bytes: number;
    drops: number;
    files?: string[];
    blobs?: { url: string; size: number }[];
    captureStartTime?: string;
  }[];
}

/** One packet of a downloaded capture, as tshark reads it. */
interface Frame {
  time: number;
  iface: string;
  ports: [number, number];
}

describe.skipIf(!isRoot)(
  'scale-set captures: built agents as instances, a real server, the CLI (root)',
  { timeout: 300_000 },
  () => {
    /** Instances 0-3 (3 enrolls mid-capture) and the plain VM, each on a lab of its own. */
    const labs = new Map<number | 'plain', Lab>();
    const echoes: Server[] = [];
    const agents = new Map<number | 'plain', CliProcess>();
    let root: string;
    let azurite: Azurite;
    let server: TestServer;
    let tenant: Tenant;

    /** `wirewatch agent` as instance `i` of `web` (or the plain VM) on its lab's host `a`. */
    function startAgent(i: number | 'plain'): CliProcess {
      const lab = labs.get(i)!;
      const proc = launch(
        agentArgs({
          server: server.url,
          enrollToken: tenant.enrollToken,
          subscription: tenant.subscriptionId,
          resourceGroup: RG,
          host: i === 'plain' ? { name: 'plain' } : { scaleSet: 'web', instanceId: String(i) },
          location: L,
          on: lab.a,
          dataDir: path.join(root, `agent-${i}`),
          captureRoot: path.join(root, `captures-${i}`),
        }),
      );
      agents.set(i, proc);
      return proc;
    }

    beforeAll(async () => {
      root = await mkdtemp(path.join(tmpdir(), 'ww-vmss-captures-'));
      for (const i of [0, 1, 2, 3, 'plain'] as const) labs.set(i, await createLab());
      for (const [i, lab] of labs) {
        echoes.push(await serve(lab, lab.a, [{ proto: 'udp', host: lab.a.ipv4, port: portOf(i) }]));
      }
      azurite = await startAzurite({ dataDir: path.join(root, 'azurite') });
      // Short operation deadlines, so that the offline instance's start and the killed one's
      // stop are given up in seconds rather than a minute.
      server = await startTestServer({ operationTimeoutMs: 10_000, sweepIntervalMs: 500 });
      tenant = await createTenant(server, 'scale-set captures');
      await registerStorageAccount(server, tenant, azurite.connectionString);
      for (const i of [0, 1, 2, 'plain'] as const) startAgent(i);
      await waitFor(
        () => Promise.all(['0', '1', '2'].map((i) => instanceConnection(i))),
        (states) => states.every((s) => s === 'Connected'),
        60_000,
        200,
      );
    }, 180_000);

    afterAll(async () => {
      await runEveryStep([
        ...[...agents.values()].map((proc) => () => stopProcess(proc)),
        ...echoes.map((echo) => () => echo.close()),
        () => server?.close(),
        () => azurite?.close(),
        ...[...labs.values()].map((lab) => () => lab.close()),
        () => (root ? rm(root, { recursive: true, force: true }) : undefined),
      ]);
    });

    const sub = () => tenant.subscriptionId;
    const scaleSetId = () =>
      `/subscriptions/${sub()}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachineScaleSets/web`;
    const capture = (name: string) =>
      capturePath(sub(), 'NetworkWatcherRG', `NetworkWatcher_${L}`, name);

    async function instanceConnection(id: string): Promise<string | undefined> {
      const r = await server.call(
        'GET',
        `${scaleSetId()}/virtualMachines/${id}?api-version=2024-07-01`,
        { token: tenant.reader },
      );
      return r.status === 200 ? r.body.properties.agent.connectionState : undefined;
    }

    /** `wirewatch ARGS` as the tenant's Contributor, by environment, with no profile. */
    const ww = (args: readonly string[]): Promise<CliResult> =>
      runCli(args, {
        ...CLEAN_ENV,
        XDG_CONFIG_HOME: path.join(root, 'cli-home'),
        WIREWATCH_SERVER: server.url,
        WIREWATCH_TOKEN: tenant.contributor,
      });

    const status = async (name: string): Promise<Status> => {
      const r = await server.call('POST', `${capture(name)}/queryStatus?api-version=${API}`, {
        token: tenant.reader,
      });
      expect(r.status, r.text).toBe(200);
      return r.body as Status;
    };
    const instanceOf = (s: Status, id: string) => s.instances.find((i) => i.instanceId === id);
    /** queryStatus of `name` once `predicate` holds. */
    const statusWhen = (name: string, predicate: (s: Status) => boolean, timeoutMs = 60_000) =>
      waitFor(() => status(name), predicate, timeoutMs, 200);
    const allRunning = (ids: string[]) => (s: Status) =>
      s.instances.length === ids.length &&
      ids.every((id) => instanceOf(s, id)?.status === 'Running');

    /** `count` UDP datagrams from instance `i`'s peer to it (each echoed: 2 packets). */
    async function traffic(i: number | 'plain', count: number, sport: number): Promise<void> {
      const lab = labs.get(i)!;
      const [result] = await send(lab, lab.b, [
        { proto: 'udp', src: lab.b.ipv4, sport, dst: lab.a.ipv4, dport: portOf(i), count },
      ]);
      expect(result!.echoed).toBe(count);
    }

    /** The merged pcapng of a capture (the CLI's download), read by tshark. */
    async function merged(name: string): Promise<Frame[]> {
      const file = path.join(root, `${name}.pcapng`);
      json(
        await ww(['capture', 'download', '-l', L, '-n', name, '--format', 'pcapng', '-f', file]),
      );
      const lines = await tsharkFieldLines(file, [
        'frame.time_epoch',
        'frame.interface_name',
        'udp.srcport',
        'udp.dstport',
      ]);
      return lines.map((line) => {
        const [time, iface, sport, dport] = line.split('\t');
        return { time: Number(time), iface: iface!, ports: [Number(sport), Number(dport)] };
      });
    }

    /**
     * A merged file holds, for each instance of `expected` (instance id → datagrams sent), every
     * packet of its traffic under interface `web_{id}` and nothing else, merged by time.
     */
    function expectMerged(frames: Frame[], expected: Record<string, number>): void {
      // Merged by time: where one instance's packet follows another's, it is not earlier. (Within
      // one instance the file's own order is kept: tcpdump's stamps need not be sorted.)
      for (const [i, f] of frames.slice(1).entries()) {
        if (f.iface !== frames[i]!.iface) expect(f.time).toBeGreaterThanOrEqual(frames[i]!.time);
      }
      const byIface = new Map<string, Frame[]>();
      for (const f of frames) byIface.set(f.iface, [...(byIface.get(f.iface) ?? []), f]);
      expect([...byIface.keys()].sort()).toEqual(
        Object.keys(expected)
          .map((id) => `web_${id}`)
          .sort(),
      );
      for (const [id, count] of Object.entries(expected)) {
        const own = byIface.get(`web_${id}`) ?? [];
        expect(own, `instance ${id}`).toHaveLength(2 * count);
        for (const f of own) expect(f.ports).toContain(portOf(Number(id)));
      }
    }

    it('captures with --vmss, az --vm/--target with --include and --exclude: each instance its own traffic, merged by time', async () => {
      const storage = ['--storage-account', 'logs', '--filters', UDP, '--time-limit', '120'];
      const created = await Promise.all([
        ww(['capture', 'create', '-g', RG, '--vmss', 'web', '-n', 'all', ...storage, '--wait']),
        ww([
          ...['capture', 'create', '-g', RG, '--vm', 'web', '--target-type', 'AzureVMSS'],
          ...['-n', 'incl', '--include', '0', '2', ...storage, '--wait'],
        ]),
        ww([
          ...['capture', 'create', '--target', scaleSetId(), '--target-type', 'AzureVMSS'],
          ...['-n', 'excl', '--exclude', '1', ...storage, '--wait'],
        ]),
        ww(['capture', 'create', '-g', RG, '--vm', 'plain', '-n', 'plain', ...storage, '--wait']),
      ]);
      for (const r of created) {
        expect(json(r).properties).toMatchObject({ provisioningState: 'Succeeded' });
      }
      expect(json(created[0]).properties).toMatchObject({
        target: scaleSetId(),
        targetType: 'AzureVMSS',
      });
      expect(json(created[1]).properties.scope).toEqual({ include: ['0', '2'] });
      expect(json(created[2]).properties.scope).toEqual({ exclude: ['1'] });
      // Traffic once every selected instance runs, so that all of it is captured.
      await Promise.all([
        statusWhen('all', allRunning(['0', '1', '2'])),
        statusWhen('incl', allRunning(['0', '2'])),
        statusWhen('excl', allRunning(['0', '2'])),
      ]);
      const sent: Record<string, number> = { 0: 3, 1: 5, 2: 7 };
      await Promise.all([
        ...Object.entries(sent).map(([i, n]) => traffic(Number(i), n, 42000)),
        traffic('plain', 4, 42000),
      ]);
      for (const name of ['all', 'incl', 'excl', 'plain']) {
        json(await ww(['capture', 'stop', '-l', L, '-n', name, '--wait']));
      }

      const all = await status('all');
      expect(all).toMatchObject({
        packetCaptureStatus: 'Stopped',
        stopReason: 'ManualIntervention',
        packetsCaptured: 2 * (3 + 5 + 7),
      });
      expect(all.instances.map((i) => [i.instanceId, i.status, i.stopReason, i.packets])).toEqual([
        ['0', 'Stopped', 'ManualIntervention', 6],
        ['1', 'Stopped', 'ManualIntervention', 10],
        ['2', 'Stopped', 'ManualIntervention', 14],
      ]);
      // One blob per instance, under the instance's own Azure-style path.
      for (const i of all.instances) {
        expect(i.blobs).toHaveLength(1);
        expect(i.blobs![0]!.url).toMatch(
          new RegExp(
            `/virtualmachinescalesets/web/virtualmachines/${i.instanceId}/\\d{4}/\\d\\d/\\d\\d/packetcapture_[^/]+\\.cap$`,
          ),
        );
      }
      expectMerged(await merged('all'), sent);
      for (const name of ['incl', 'excl']) {
        const s = await status(name);
        expect(s.instances.map((i) => [i.instanceId, i.packets])).toEqual([
          ['0', 6],
          ['2', 14],
        ]);
        expectMerged(await merged(name), { 0: 3, 2: 7 });
      }
      expect((await status('plain')).packetsCaptured).toBe(8);
    });

    it('capture show and list: the aggregate, and the instance table in table, tsv and json', async () => {
      // The capture's table, a blank line, then the instances' table.
      const shown = await ww(['capture', 'show', '-l', L, '-n', 'all', '-o', 'table']);
      expect(shown, shown.stderr).toMatchObject({ code: 0, stderr: '' });
      const lines = shown.stdout.split('\n');
      expect(lines[0]).toMatch(
        /^Name +Status +StopReason +Target +TimeLimit \(s\) +File +StorageAccount$/,
      );
      expect(lines[2]).toMatch(/^all +Stopped +ManualIntervention +web +120 +logs$/);
      expect(lines[3]).toBe('');
      expect(lines[4]!.split(/\s+/)).toEqual(INSTANCE_HEADERS);
      expect(lines[5]).toMatch(/^-+( +-+){5}$/);
      expect(lines.slice(6)).toEqual([
        expect.stringMatching(/^0 +Stopped +ManualIntervention +6 +[\d.]+ K?i?B +0$/),
        expect.stringMatching(/^1 +Stopped +ManualIntervention +10 +[\d.]+ K?i?B +0$/),
        expect.stringMatching(/^2 +Stopped +ManualIntervention +14 +[\d.]+ K?i?B +0$/),
        '',
      ]);
      const rows = tsv(
        await ww(['capture', 'show', '-l', L, '-n', 'incl', '--instances', '-o', 'tsv']),
        6,
      );
      expect(rows.map((r) => [r[0], r[1], r[2], r[3], r[5]])).toEqual([
        ['0', 'Stopped', 'ManualIntervention', '6', '0'],
        ['2', 'Stopped', 'ManualIntervention', '14', '0'],
      ]);
      expect(Number(rows[0]![4])).toBeGreaterThan(6 * 42);
      const instances = json(await ww(['capture', 'show', '-l', L, '-n', 'excl', '--instances']));
      expect(instances.map((i: Status['instances'][number]) => i.instanceId)).toEqual(['0', '2']);
      expect(instances[0].blobs).toHaveLength(1);
      // One row per capture, a scale set's with its aggregate.
      const list = tsv(await ww(['capture', 'list', '-l', L, '-o', 'tsv']), 7);
      expect(list.map((r) => [r[0], r[1], r[3]]).sort()).toEqual([
        ['all', 'Stopped', 'web'],
        ['excl', 'Stopped', 'web'],
        ['incl', 'Stopped', 'web'],
        ['plain', 'Stopped', 'plain'],
      ]);
      usage(await ww(['capture', 'show', '-l', L, '-n', 'plain', '--instances']), /targets a VM/);
      // The server's refusal of an instance, said about the option typed.
      const unknown = await ww([
        ...['capture', 'create', '-g', RG, '--vmss', 'web', '-n', 'x', '--include', '0', '7'],
        ...['--storage-account', 'logs'],
      ]);
      expect(unknown.stdout).toBe('');
      expect(unknown.stderr).toMatch(
        /^wirewatch: InvalidScope: --include 7: "7" names no instance/,
      );
      expect(unknown.code).toBe(1);
    });

    it('an instance offline from the start, one killed mid-capture, one joining: each its own state, the others carry on', async () => {
      // Instance 2 is enrolled but offline when the capture is created.
      expect(await stopProcess(agents.get(2))).toBe(0);
      await waitFor(
        () => instanceConnection('2'),
        (s) => s === 'Disconnected',
      );
      const storage = ['--storage-account', 'logs', '--filters', UDP, '--time-limit', '240'];
      const created = await Promise.all([
        ww(['capture', 'create', '-g', RG, '--vmss', 'web', '-n', 'life', ...storage, '--wait']),
        // An explicit include admits no newcomer.
        ww([
          ...['capture', 'create', '-g', RG, '--vmss', 'web', '-n', 'only0'],
          ...['--include', '0', ...storage, '--wait'],
        ]),
      ]);
      for (const r of created) json(r);
      const started = await statusWhen('life', (s) =>
        ['0', '1'].every((id) => instanceOf(s, id)?.status === 'Running'),
      );
      expect(started.packetCaptureStatus).toBe('Running');
      // Waiting for its agent: not known to run, with AgentStopped saying why.
      expect(instanceOf(started, '2')).toMatchObject({
        status: 'Unknown',
        errors: [expect.objectContaining({ code: 'AgentStopped' })],
      });

      // Instance 1 is killed (agent and tcpdump) once its traffic is counted.
      await Promise.all([traffic(0, 2, 42100), traffic(1, 4, 42100)]);
      await statusWhen('life', (s) => instanceOf(s, '1')!.packets === 8);
      await stopProcess(agents.get(1), 'SIGKILL');
      await waitFor(
        () => instanceConnection('1'),
        (s) => s === 'Disconnected',
      );
      const afterKill = await status('life');
      expect(afterKill.packetCaptureStatus).toBe('Running');
      expect(instanceOf(afterKill, '0')?.status).toBe('Running');

      // Instance 3 enrolls while the capture runs: it joins it for the time left.
      startAgent(3);
      const joined = await statusWhen('life', (s) => instanceOf(s, '3')?.status === 'Running');
      expect(joined.instances.map((i) => i.instanceId)).toEqual(['0', '1', '2', '3']);
      await Promise.all([traffic(0, 3, 42200), traffic(3, 6, 42200)]);

      // The offline instance's start is given up: its own Error, the capture carries on.
      const gaveUp = await statusWhen('life', (s) => instanceOf(s, '2')?.status === 'Error');
      expect(JSON.stringify(instanceOf(gaveUp, '2')!.errors)).toMatch(/AgentStopped/);
      expect(gaveUp.packetCaptureStatus).toBe('Running');
      expect((await status('only0')).instances.map((i) => i.instanceId)).toEqual(['0']);

      json(await ww(['capture', 'stop', '-l', L, '-n', 'only0', '--wait']));
      json(await ww(['capture', 'stop', '-l', L, '-n', 'life', '--wait']));
      const ended = await status('life');
      // Stopped, not Error: some instances did not fail; the reason is the stop asked for.
      expect(ended).toMatchObject({
        packetCaptureStatus: 'Stopped',
        stopReason: 'ManualIntervention',
      });
      const [i0, i1, i2, i3] = ended.instances;
      expect(i0).toMatchObject({
        status: 'Stopped',
        stopReason: 'ManualIntervention',
        packets: 10,
      });
      // The killed instance's stop could not be acknowledged: forced, with what it had reported.
      expect(i1).toMatchObject({ status: 'Stopped', packets: 8 });
      expect(JSON.stringify(i1!.errors)).toMatch(/AgentStopped/);
      expect(i2).toMatchObject({ status: 'Error', packets: 0 });
      expect(i3).toMatchObject({
        status: 'Stopped',
        stopReason: 'ManualIntervention',
        packets: 12,
      });
      // The newcomer started after the capture did: a child of its own, joined late.
      expect(Date.parse(i3!.captureStartTime!)).toBeGreaterThan(Date.parse(i0!.captureStartTime!));

      // Back online, instance 1 uploads what it captured before it was killed.
      startAgent(1);
      await statusWhen('life', (s) => (instanceOf(s, '1')!.blobs ?? []).length === 1);
      expectMerged(await merged('life'), { 0: 5, 1: 4, 3: 6 });
    });
  },
);
