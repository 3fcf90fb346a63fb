import type { FastifyPluginAsync } from 'fastify';
import { WirewatchError } from '../../model/errors.js';
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
 */
export const virtualMachineRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { store, control } = ctx;

  async function load(p: Params) {
    const vm = await store.getVm(p.subscriptionId.toLowerCase(), p.resourceGroupName, p.vmName);
    if (!vm) {
      throw new WirewatchError(
        'ResourceNotFound',
        `Virtual machine '${p.vmName}' was not found in resource group '${p.resourceGroupName}'`,
        { target: 'vmName' },
      );
    }
    return vm;
  }

  app.get<{ Params: Params }>(`${VMS}/:vmName`, async (request) => {
    await authorize(store, principalOf(request), request.params.subscriptionId, 'Reader');
    const vm = await load(request.params);
    return virtualMachineView(vm, control.isAgentConnected(vm.id));
  });

  app.delete<{ Params: Params }>(
    `${VMS}/:vmName`,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Contributor');
      const vm = await store.getVm(
        request.params.subscriptionId.toLowerCase(),
        request.params.resourceGroupName,
        request.params.vmName,
      );
      if (!vm) return reply.code(204).send();
      await control.deleteVm(vm, callerOf(request));
      // Its credential no longer works; the channel it opened with it closes now, not at the
      // agent's next reconnect (which the 401 then tells to forget its enrollment).
      ctx.sockets.closeOwner({ kind: 'vm', vmId: vm.id }, 'VM deleted');
      return reply.code(200).send();
    },
  );

  app.get<{ Params: Omit<Params, 'vmName'> }>(VMS, async (request) => {
    const p = request.params;
    await authorize(store, principalOf(request), p.subscriptionId, 'Reader');
    const vms = await store.listVms(p.subscriptionId.toLowerCase(), p.resourceGroupName);
    return { value: vms.map((vm) => virtualMachineView(vm, control.isAgentConnected(vm.id))) };
  });

  app.get<{ Params: { subscriptionId: string } }>(
    `${SUB}/providers/Microsoft.Compute/virtualMachines`,
    async (request) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Reader');
      const vms = await store.listVms(request.params.subscriptionId.toLowerCase());
      return { value: vms.map((vm) => virtualMachineView(vm, control.isAgentConnected(vm.id))) };
    },
  );
};
