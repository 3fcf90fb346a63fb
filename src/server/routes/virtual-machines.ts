import type { FastifyPluginAsync } from 'fastify';
import { authorize } from '../auth.js';
import { callerOf, principalOf, type ServerContext } from '../context.js';
import { virtualMachineView } from '../views.js';

const SUB = '/subscriptions/:subscriptionId';
const VMS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Compute/virtualMachines`;

interface Params {
  subscriptionId: string;
  resourceGroupName: string;
  vmName: string;
}

/**
 * Hosts running the agent, read the ARM way (Microsoft.Compute/virtualMachines). DELETE
 * deregisters the agent: its captures stop with TargetDeleted and its credential stops working.
 * Scale-set instances are not VMs here, as in Azure (routes/scale-sets.ts). The rules are in
 * src/control/hosts.ts.
 */
export const virtualMachineRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { control, sockets } = ctx;
  const { hosts } = control;
  const ref = (p: Params) => ({
    subscriptionId: p.subscriptionId,
    resourceGroup: p.resourceGroupName,
    name: p.vmName,
  });

  app.get<{ Params: Params }>(`${VMS}/:vmName`, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
    const vm = await hosts.getVm(ref(request.params));
    return virtualMachineView(vm, hosts.isConnected(vm.id));
  });

  app.delete<{ Params: Params }>(
    `${VMS}/:vmName`,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Contributor');
      const vm = await hosts.deleteVm(ref(request.params), callerOf(request));
      if (!vm) return reply.code(204).send();
      // Its credential no longer works; the channel it opened with it closes now, not at the
      // agent's next reconnect (which the 401 then tells to forget its enrollment).
      sockets.closeOwner({ kind: 'vm', vmId: vm.id }, 'VM deleted');
      return reply.code(200).send();
    },
  );

  app.get<{ Params: Omit<Params, 'vmName'> }>(VMS, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const vms = await hosts.listVms(p.subscriptionId, p.resourceGroupName);
    return { value: vms.map((vm) => virtualMachineView(vm, hosts.isConnected(vm.id))) };
  });

  app.get<{ Params: { subscriptionId: string } }>(
    `${SUB}/providers/Microsoft.Compute/virtualMachines`,
    async (request) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
      const vms = await hosts.listVms(request.params.subscriptionId);
      return { value: vms.map((vm) => virtualMachineView(vm, hosts.isConnected(vm.id))) };
    },
  );
};
