import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createControlFixture, type ControlFixture } from '../../test/support/control-context.js';
import {
  instance,
  subA,
  subB,
  subscription,
} from '../../test/support/store-conformance/fixtures.js';
import { AgentReconciler } from './agent-reconciliation.js';
import { BlobGrants } from './blob-grants.js';
import { Hosts } from './hosts.js';
import { CaptureOperations } from './operations.js';
import { ScaleSetCaptures } from './scale-set-captures.js';
import { UploadChecks } from './upload-checks.js';

const caller = { actor: 'token:t-1', sourceIp: '192.0.2.9' };

describe('Hosts', () => {
  let f: ControlFixture;
  let hosts: Hosts;
  beforeEach(async () => {
    f = await createControlFixture();
    const memory = f.memory();
    const operations = new CaptureOperations(f.ctx, memory, 60_000);
    const grants = new BlobGrants(f.ctx, {
      openStorageAccount: undefined,
      uploadGraceMs: 3_600_000,
    });
    const uploads = new UploadChecks(f.ctx, {
      grants,
      operations,
      backoff: { minMs: 10, maxMs: 100 },
    });
    const scaleSets = new ScaleSetCaptures(f.ctx, { memory, operations, grants });
    hosts = new Hosts(
      f.ctx,
      new AgentReconciler(f.ctx, { memory, operations, grants, uploads, scaleSets }),
    );
    // The fixture has VM Web-01 in Fleet-RG; add two scale sets there and one elsewhere.
    for (const id of ['10', '2', '0']) await f.store.createVm(instance(subA, 'Web', id));
    await f.store.createVm(instance(subA, 'api', '0', { location: 'westus' }));
    await f.store.createVm(instance(subA, 'web', '0', { resourceGroup: 'Other-RG' }));
    await f.store.createSubscription(subscription(subB));
    await f.store.createVm(instance(subB, 'web', '0'));
  });
  afterEach(async () => {
    await f.close();
  });

  const web = { subscriptionId: subA.toUpperCase(), resourceGroup: 'fleet-rg', scaleSet: 'WEB' };

  it('lists plain VMs only as VMs, every host as an agent', async () => {
    expect((await hosts.listVms(subA.toUpperCase())).map((v) => v.name)).toEqual(['Web-01']);
    expect((await hosts.listVms(subA, 'other-rg')).map((v) => v.name)).toEqual([]);
    expect((await hosts.listAgents(subA)).map((v) => v.name).sort()).toEqual(
      ['Web-01', 'Web_0', 'Web_10', 'Web_2', 'api_0', 'web_0'].sort(),
    );
    const ref = { subscriptionId: subA, resourceGroup: 'Fleet-RG' };
    expect(await hosts.getVm({ ...ref, name: 'web-01' })).toMatchObject({ id: f.vmId });
    // An instance is not a VM resource.
    await expect(hosts.getVm({ ...ref, name: 'Web_0' })).rejects.toMatchObject({
      code: 'ResourceNotFound',
      target: 'vmName',
    });
    expect(await hosts.deleteVm({ ...ref, name: 'Web_0' }, caller)).toBeUndefined();
    expect(await f.store.getVm(subA, 'Fleet-RG', 'Web_0')).toBeDefined();
  });

  it('lists scale sets by resource group and name, each with its instances by number', async () => {
    const sets = await hosts.listScaleSets(subA);
    expect(sets.map((s) => [s.resourceGroup, s.name, s.instances.length])).toEqual([
      ['Fleet-RG', 'api', 1],
      ['Fleet-RG', 'Web', 3],
      ['Other-RG', 'web', 1],
    ]);
    expect(sets[1]!.instances.map((v) => v.instanceId)).toEqual(['0', '2', '10']);
    expect((await hosts.listScaleSets(subA, 'OTHER-rg')).map((s) => s.name)).toEqual(['web']);
    expect(await hosts.listScaleSets(subA, 'none')).toEqual([]);
    const one = await hosts.getScaleSet(web);
    expect(one).toMatchObject({ name: 'Web', resourceGroup: 'Fleet-RG', location: 'westus' });
    expect(one.instances.map((v) => v.instanceId)).toEqual(['0', '2', '10']);
  });

  it('answers ResourceNotFound naming the scale set or the instance', async () => {
    await expect(hosts.getScaleSet({ ...web, scaleSet: 'nope' })).rejects.toMatchObject({
      code: 'ResourceNotFound',
      target: 'vmScaleSetName',
    });
    await expect(hosts.getInstance({ ...web, scaleSet: 'nope' }, '0')).rejects.toMatchObject({
      target: 'vmScaleSetName',
    });
    for (const id of ['1', '01', 'x', '']) {
      await expect(hosts.getInstance(web, id)).rejects.toMatchObject({
        code: 'ResourceNotFound',
        target: 'instanceId',
      });
    }
    expect(await hosts.getInstance(web, '10')).toMatchObject({ name: 'Web_10', instanceId: '10' });
  });

  it('deleting an instance deregisters it as deleting a VM does: TargetDeleted, audited', async () => {
    const target = await hosts.getInstance(web, '2');
    f.agents.connected.add(target.id);
    const running = await f.addSession({ vmId: target.id, status: 'Running' });
    const other = await f.addSession({ status: 'Running' });
    expect(await hosts.deleteInstance(web, '2', caller)).toMatchObject({ id: target.id });
    expect(await f.store.getVmById(target.id)).toBeUndefined();
    expect(await f.store.getSessionById(running.id)).toMatchObject({
      status: 'Stopped',
      stopReason: 'TargetDeleted',
    });
    expect((await f.store.getSessionById(other.id))?.status).toBe('Running');
    expect(f.agents.sent).toContainEqual({ vmId: target.id, message: { type: 'deregistered' } });
    expect((await f.store.listAudit(subA, { limit: 1 })).items[0]).toMatchObject({
      action: 'virtualMachine.delete',
      actor: caller.actor,
      resourceId: `/subscriptions/${subA}/resourceGroups/Fleet-RG/providers/Microsoft.Compute/virtualMachineScaleSets/Web/virtualMachines/2`,
    });
    expect(await hosts.deleteInstance(web, '2', caller)).toBeUndefined();
    expect((await hosts.getScaleSet(web)).instances.map((v) => v.instanceId)).toEqual(['0', '10']);
    // The last instance gone, the scale set is gone.
    await hosts.deleteInstance({ ...web, scaleSet: 'api' }, '0', caller);
    await expect(hosts.getScaleSet({ ...web, scaleSet: 'api' })).rejects.toMatchObject({
      code: 'ResourceNotFound',
    });
  });

  it('deleting a VM deregisters it', async () => {
    const ref = { subscriptionId: subA, resourceGroup: 'fleet-rg', name: 'WEB-01' };
    expect(await hosts.deleteVm(ref, caller)).toMatchObject({ id: f.vmId });
    expect(await f.store.getVmById(f.vmId)).toBeUndefined();
    expect(await hosts.deleteVm(ref, caller)).toBeUndefined();
  });
});
