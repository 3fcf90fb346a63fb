/**
 * Hosts as scale-set instances, through public entry points only: two built `wirewatch agent`
 * binaries (each on a lab namespace's interface) enrolling with `--scale-set` and no instance id,
 * a real server on loopback, its ARM API (plain fetch: @azure/arm-compute is not a dependency)
 * and the built CLI (`wirewatch vmss`). A restart keeps the instance id; a delete deregisters.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLEAN_ENV, json, refused, table, tsv, usage } from './lab/cli-output.js';
import { agentArgs, launch, runCli, stopProcess, type CliProcess } from './lab/cli-process.js';
import {
  createTenant,
  startTestServer,
  vmId,
  waitFor,
  type Tenant,
  type TestServer,
} from './lab/control-plane.js';
import { isRoot, runEveryStep } from './lab/exec.js';
import { createLab, type Lab, type LabHost } from './lab/lab.js';

const COMPUTE = '?api-version=2024-07-01';
const RG = 'lab';
const SS_HEADERS = ['Name', 'ResourceGroup', 'Location', 'Capacity', 'Created'];
const INSTANCE_HEADERS = [
  'InstanceId',
  'Name',
  'ResourceGroup',
  'Location',
  'Connection',
  'LastSeen',
  'Hostname',
];

interface Instance {
  id: string;
  name: string;
  instanceId: string;
  properties: { vmId: string; agent: { connectionState: string; hostname: string } };
}

describe.skipIf(!isRoot)(
  'scale-set instances: built agents, a real server, the CLI (root)',
  { timeout: 240_000 },
  () => {
    let lab: Lab;
    let root: string;
    let server: TestServer;
    let tenant: Tenant;
    const agents = new Map<'a' | 'b', CliProcess>();

    beforeAll(async () => {
      root = await mkdtemp(path.join(tmpdir(), 'ww-vmss-'));
      [lab, server] = await Promise.all([createLab(), startTestServer()]);
      tenant = await createTenant(server, 'scale sets');
    }, 120_000);

    afterAll(async () => {
      await runEveryStep([
        ...[...agents.values()].map((proc) => () => stopProcess(proc)),
        () => server?.close(),
        () => lab?.close(),
        () => (root ? rm(root, { recursive: true, force: true }) : undefined),
      ]);
    });

    const sub = () => tenant.subscriptionId;
    const group = () => `/subscriptions/${sub()}/resourceGroups/${RG}/providers/Microsoft.Compute`;
    const scaleSet = () => `${group()}/virtualMachineScaleSets/web`;
    const dataDir = (label: 'a' | 'b') => path.join(root, `agent-${label}`);
    const identity = async (label: 'a' | 'b') =>
      JSON.parse(await readFile(path.join(dataDir(label), 'agent.json'), 'utf8')) as {
        agentId: string;
        name: string;
        scaleSet: string;
        instanceId: string;
        vmId: string;
      };
    const get = (p: string, token = tenant.reader) =>
      server.call('GET', `${p}${COMPUTE}`, { token });

    /** `wirewatch agent --scale-set web` on a lab host, no instance id. */
    function startInstance(label: 'a' | 'b', host: LabHost): CliProcess {
      const proc = launch(
        agentArgs({
          server: server.url,
          enrollToken: tenant.enrollToken,
          subscription: sub(),
          resourceGroup: RG,
          host: { scaleSet: 'web' },
          location: 'westeurope',
          on: host,
          dataDir: dataDir(label),
          captureRoot: path.join(root, 'captures'),
        }),
      );
      agents.set(label, proc);
      return proc;
    }

    /** The scale set's instances once `predicate` holds for them. */
    const instancesWhen = (predicate: (list: Instance[]) => boolean) =>
      waitFor(
        async () => ((await get(`${scaleSet()}/virtualMachines`)).body?.value ?? []) as Instance[],
        predicate,
        30_000,
        200,
      ).then((list) => list.sort((x, y) => Number(x.instanceId) - Number(y.instanceId)));

    const states = (list: Instance[]) =>
      list.map((i) => `${i.instanceId}:${i.properties.agent.connectionState}`);

    /** `wirewatch ARGS` as the tenant's Reader, by environment, with no profile. */
    const ww = (args: readonly string[]) =>
      runCli(args, {
        ...CLEAN_ENV,
        XDG_CONFIG_HOME: path.join(root, 'cli-home'),
        WIREWATCH_SERVER: server.url,
        WIREWATCH_TOKEN: tenant.reader,
      });

    it('two agents enrolling at once without --instance-id become instances 0 and 1', async () => {
      startInstance('a', lab.a);
      startInstance('b', lab.b);
      const list = await instancesWhen(
        (l) => l.length === 2 && l.every((i) => i.properties.agent.connectionState === 'Connected'),
      );
      expect(list.map((i) => i.instanceId)).toEqual(['0', '1']);
      const saved = [await identity('a'), await identity('b')];
      expect(saved.map((s) => s.instanceId).sort()).toEqual(['0', '1']);
      for (const s of saved) {
        expect(s).toMatchObject({ scaleSet: 'web', name: `web_${s.instanceId}` });
        const listed = list.find((i) => i.instanceId === s.instanceId)!;
        expect(listed.properties.vmId).toBe(s.agentId);
        expect(s.vmId).toBe(`${scaleSet()}/virtualMachines/${s.instanceId}`);
      }
    });

    it('reads the scale set and its instances as Azure shapes them; instances are not VMs', async () => {
      const set = await get(scaleSet());
      expect(set.status, set.text).toBe(200);
      expect(set.body).toEqual({
        id: scaleSet(),
        name: 'web',
        type: 'Microsoft.Compute/virtualMachineScaleSets',
        location: 'westeurope',
        sku: { capacity: 2 },
        properties: {
          provisioningState: 'Succeeded',
          orchestrationMode: 'Uniform',
          timeCreated: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        },
      });
      for (const list of [
        await get(`${group()}/virtualMachineScaleSets`),
        await get(`/subscriptions/${sub()}/providers/Microsoft.Compute/virtualMachineScaleSets`),
      ]) {
        expect(list.status).toBe(200);
        expect(list.body.value).toEqual([set.body]);
      }
      const one = await get(`${scaleSet()}/virtualMachines/1`);
      expect(one.status, one.text).toBe(200);
      expect(one.body).toMatchObject({
        id: `${scaleSet()}/virtualMachines/1`,
        name: 'web_1',
        type: 'Microsoft.Compute/virtualMachineScaleSets/virtualMachines',
        location: 'westeurope',
        instanceId: '1',
        properties: {
          provisioningState: 'Succeeded',
          agent: { connectionState: 'Connected', hostname: hostname() },
        },
      });
      // As in Azure, a uniform scale set's instances are not in the VM list, nor VMs by name.
      expect((await get(`${group()}/virtualMachines`)).body.value).toEqual([]);
      expect(
        (await get(`/subscriptions/${sub()}/providers/Microsoft.Compute/virtualMachines`)).body
          .value,
      ).toEqual([]);
      const asVm = await get(vmId(sub(), RG, 'web_1'));
      expect(asVm.status).toBe(404);
      expect(asVm.body.error).toMatchObject({ code: 'ResourceNotFound', target: 'vmName' });
      const missing = await get(`${scaleSet()}/virtualMachines/7`);
      expect(missing.status).toBe(404);
      expect(missing.body.error).toMatchObject({ code: 'ResourceNotFound', target: 'instanceId' });
      const noSet = await get(`${group()}/virtualMachineScaleSets/nope/virtualMachines`);
      expect(noSet.body.error).toMatchObject({
        code: 'ResourceNotFound',
        target: 'vmScaleSetName',
      });
      // The native agent list has every host, instances with their scale set and id.
      const agentList = await server.call('GET', `/api/v1/subscriptions/${sub()}/agents`, {
        token: tenant.reader,
      });
      expect(agentList.body.value).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ name: 'web_0', scaleSet: 'web', instanceId: '0' }),
          expect.objectContaining({ name: 'web_1', scaleSet: 'web', instanceId: '1' }),
        ]),
      );
    });

    it('wirewatch vmss list, show and instance list/show, in every format', async () => {
      const [list, listTsv, show, instances, instancesTsv, instancesJson, one] = await Promise.all([
        ww(['vmss', 'list', '-g', RG, '-o', 'table']),
        ww(['vmss', 'list', '-o', 'tsv']),
        ww(['vmss', 'show', '-g', RG, '-n', 'WEB']),
        ww(['vmss', 'instance', 'list', '-g', RG, '-n', 'web', '-o', 'table']),
        ww(['vmss', 'instance', 'list', '-g', RG, '-n', 'web', '-o', 'tsv']),
        ww(['vmss', 'instance', 'list', '-g', RG, '-n', 'web']),
        ww(['vmss', 'instance', 'show', '-g', RG, '-n', 'web', '--instance-id', '1']),
      ]);
      const rows = table(list, SS_HEADERS);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatch(/^web +lab +westeurope +2 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
      expect(tsv(listTsv, 5)).toEqual([
        ['web', RG, 'westeurope', '2', expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/)],
      ]);
      expect(json(show)).toMatchObject({ id: scaleSet(), sku: { capacity: 2 } });
      const lines = table(instances, INSTANCE_HEADERS);
      expect(lines).toHaveLength(2);
      for (const [i, line] of lines.entries()) {
        expect(line).toMatch(
          new RegExp(`^${i} +web_${i} +lab +westeurope +Connected +.+ +${hostname()}$`),
        );
      }
      expect(tsv(instancesTsv, 7).map((r) => [r[0], r[1], r[4], r[6]])).toEqual([
        ['0', 'web_0', 'Connected', hostname()],
        ['1', 'web_1', 'Connected', hostname()],
      ]);
      expect(json(instancesJson).map((i: Instance) => i.name)).toEqual(['web_0', 'web_1']);
      expect(json(one)).toMatchObject({ instanceId: '1', name: 'web_1' });
      refused(
        await ww(['vmss', 'instance', 'show', '-g', RG, '-n', 'web', '--instance-id', '9']),
        'ResourceNotFound',
      );
      refused(await ww(['vmss', 'show', '-g', RG, '-n', 'nope']), 'ResourceNotFound');
      usage(
        await ww(['vmss', 'instance', 'show', '-g', RG, '-n', 'web', '--instance-id', 'x']),
        /--instance-id/,
      );
      usage(await ww(['vmss', 'instance', 'list', '-g', RG]), /--name/);
    });

    it('a restarted agent is the same instance: no new enrollment, connected again', async () => {
      const before = await identity('b');
      expect(await stopProcess(agents.get('b'))).toBe(0);
      const down = await instancesWhen((l) =>
        l.some((i) => i.properties.agent.connectionState === 'Disconnected'),
      );
      expect(states(down)).toContain(`${before.instanceId}:Disconnected`);
      startInstance('b', lab.b);
      const up = await instancesWhen((l) =>
        l.every((i) => i.properties.agent.connectionState === 'Connected'),
      );
      expect(states(up)).toEqual(['0:Connected', '1:Connected']);
      expect(await identity('b')).toEqual(before);
      const tokens = await server.call('GET', `/api/v1/subscriptions/${sub()}/enrollmentTokens`, {
        token: tenant.owner,
      });
      expect(tokens.body.value).toEqual([expect.objectContaining({ uses: 2 })]);
    });

    it('an instance is no AzureVM capture target (scale-set captures target the set)', async () => {
      const capture = `/subscriptions/${sub()}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/packetCaptures/pc1?api-version=2025-05-01`;
      const r = await server.call('PUT', capture, {
        token: tenant.contributor,
        body: {
          properties: {
            target: vmId(sub(), RG, 'web_0'),
            targetType: 'AzureVM',
            storageLocation: { filePath: path.join(root, 'captures', 'pc1.cap') },
          },
        },
      });
      expect(r.status, r.text).toBe(400);
      expect(r.body.error).toMatchObject({ code: 'InvalidTarget' });
    });

    it('DELETE of an instance deregisters it: its agent stops and forgets it, audited', async () => {
      // Instance 0, whichever agent it is: deleting the lowest id leaves the highest in place.
      const label = (await identity('a')).instanceId === '0' ? 'a' : 'b';
      const host = label === 'a' ? lab.a : lab.b;
      const path0 = `${scaleSet()}/virtualMachines/0${COMPUTE}`;
      const del = await server.call('DELETE', path0, { token: tenant.contributor });
      expect(del.status, del.text).toBe(200);
      expect(await agents.get(label)!.exited).toBe(0);
      expect(agents.get(label)!.output()).toMatch(/deregistered/);
      await expect(stat(path.join(dataDir(label), 'agent.json'))).rejects.toThrow(/ENOENT/);
      expect((await get(`${scaleSet()}/virtualMachines/0`)).status).toBe(404);
      const left = await instancesWhen((l) => l.length === 1);
      expect(left.map((i) => i.instanceId)).toEqual(['1']);
      expect((await get(scaleSet())).body.sku).toEqual({ capacity: 1 });
      expect((await server.call('DELETE', path0, { token: tenant.contributor })).status).toBe(204);
      const audit = await server.call('GET', `/api/v1/subscriptions/${sub()}/audit`, {
        token: tenant.owner,
      });
      expect(audit.body.value).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            action: 'virtualMachine.delete',
            resourceId: `${scaleSet()}/virtualMachines/0`,
          }),
        ]),
      );
      // Enrolling again, it is a new instance: one past the highest id in the set.
      startInstance(label, host);
      const again = await instancesWhen(
        (l) => l.length === 2 && l.every((i) => i.properties.agent.connectionState === 'Connected'),
      );
      expect(again.map((i) => i.instanceId)).toEqual(['1', '2']);
      expect((await identity(label)).instanceId).toBe('2');
    });
  },
);
