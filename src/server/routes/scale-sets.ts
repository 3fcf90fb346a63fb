import type { FastifyPluginAsync } from 'fastify';
import { authorize } from '../auth.js';
import { callerOf, principalOf, type ServerContext } from '../context.js';
import { scaleSetView, scaleSetVmView } from '../views.js';

const SUB = '/subscriptions/:subscriptionId';
const SETS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Compute/virtualMachineScaleSets`;
const SET = `${SETS}/:vmScaleSetName`;
const INSTANCE = `${SET}/virtualMachines/:instanceId`;

interface GroupParams {
  subscriptionId: string;
  resourceGroupName: string;
}

interface SetParams extends GroupParams {
  vmScaleSetName: string;
}

interface InstanceParams extends SetParams {
  instanceId: string;
}

/**
 * Scale sets and their instances, read the ARM way (Microsoft.Compute/virtualMachineScaleSets
 * and …/virtualMachines/{instanceId}); auth as for VMs (routes/virtual-machines.ts). A scale
 * set exists while agents are enrolled as its instances. DELETE of an instance deregisters it as
 * deleting a VM does. The rules are in src/control/hosts.ts.
 */
export const scaleSetRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { control, sockets } = ctx;
  const { hosts } = control;
  const ref = (p: SetParams) => ({
    subscriptionId: p.subscriptionId,
    resourceGroup: p.resourceGroupName,
    scaleSet: p.vmScaleSetName,
  });

  app.get<{ Params: { subscriptionId: string } }>(
    `${SUB}/providers/Microsoft.Compute/virtualMachineScaleSets`,
    async (request) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
      const sets = await hosts.listScaleSets(request.params.subscriptionId);
      return { value: sets.map(scaleSetView) };
    },
  );

  app.get<{ Params: GroupParams }>(SETS, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const sets = await hosts.listScaleSets(p.subscriptionId, p.resourceGroupName);
    return { value: sets.map(scaleSetView) };
  });

  app.get<{ Params: SetParams }>(SET, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
    return scaleSetView(await hosts.getScaleSet(ref(request.params)));
  });

  app.get<{ Params: SetParams }>(`${SET}/virtualMachines`, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
    const { instances } = await hosts.getScaleSet(ref(request.params));
    return { value: instances.map((vm) => scaleSetVmView(vm, hosts.isConnected(vm.id))) };
  });

  app.get<{ Params: InstanceParams }>(INSTANCE, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const vm = await hosts.getInstance(ref(p), p.instanceId);
    return scaleSetVmView(vm, hosts.isConnected(vm.id));
  });

  app.delete<{ Params: InstanceParams }>(
    INSTANCE,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const p = request.params;
      await authorize(control, principalOf(request), p.subscriptionId, 'Contributor');
      const vm = await hosts.deleteInstance(ref(p), p.instanceId, callerOf(request));
      if (!vm) return reply.code(204).send();
      // As for a VM: the credential no longer works, and its channel closes now.
      sockets.closeOwner({ kind: 'vm', vmId: vm.id }, 'VM deleted');
      return reply.code(200).send();
    },
  );
};
