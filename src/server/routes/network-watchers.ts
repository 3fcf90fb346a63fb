import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  checkResourceGroupName,
  checkResourceName,
  normalizeLocation,
} from '../../control/resource-ids.js';
import { NetworkWatcherSchema, type NetworkWatcherInput } from '../../model/arm.js';
import { authorize } from '../auth.js';
import { callerOf, principalOf, setOperationHeaders, type ServerContext } from '../context.js';
import { networkWatcherView } from '../views.js';

const SUB = '/subscriptions/:subscriptionId';
const GROUP = `${SUB}/resourceGroups/:resourceGroupName`;
const WATCHERS = `${GROUP}/providers/Microsoft.Network/networkWatchers`;
const WATCHER = `${WATCHERS}/:networkWatcherName`;

interface Params {
  subscriptionId: string;
  resourceGroupName: string;
  networkWatcherName: string;
}

/** networkWatchers: PUT, GET, DELETE, list per resource group and per subscription. */
export const networkWatcherRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { control } = ctx;

  api.put<{ Params: Params; Body: NetworkWatcherInput }>(
    WATCHER,
    { schema: { body: NetworkWatcherSchema }, config: { need: 'Contributor' } },
    async (request, reply) => {
      const p = request.params;
      await authorize(control, principalOf(request), p.subscriptionId, 'Contributor');
      const subscriptionId = p.subscriptionId.toLowerCase();
      const resourceGroup = checkResourceGroupName(p.resourceGroupName);
      const name = checkResourceName(p.networkWatcherName, 'networkWatcherName');
      const location = normalizeLocation(request.body.location);
      const { record, created } = await control.putWatcher({
        subscriptionId,
        resourceGroup,
        name,
        location,
        tags: request.body.tags,
      });
      return reply.code(created ? 201 : 200).send(networkWatcherView(record));
    },
  );

  api.get<{ Params: Params }>(WATCHER, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const w = await control.getWatcher(
      p.subscriptionId.toLowerCase(),
      p.resourceGroupName,
      p.networkWatcherName,
    );
    return networkWatcherView(w);
  });

  api.delete<{ Params: Params }>(
    WATCHER,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const p = request.params;
      await authorize(control, principalOf(request), p.subscriptionId, 'Contributor');
      const op = await control.deleteWatcher(
        p.subscriptionId.toLowerCase(),
        p.resourceGroupName,
        p.networkWatcherName,
        callerOf(request),
      );
      if (!op) return reply.code(204).send();
      setOperationHeaders(request, reply, op, 'Location');
      return reply.code(202).send();
    },
  );

  api.get<{ Params: Omit<Params, 'networkWatcherName'> }>(WATCHERS, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const list = await control.listWatchers(p.subscriptionId.toLowerCase(), p.resourceGroupName);
    return { value: list.map(networkWatcherView) };
  });

  api.get<{ Params: { subscriptionId: string } }>(
    `${SUB}/providers/Microsoft.Network/networkWatchers`,
    async (request) => {
      const p = request.params;
      await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
      const list = await control.listWatchers(p.subscriptionId.toLowerCase());
      return { value: list.map(networkWatcherView) };
    },
  );
};
