import type { FastifyPluginAsync } from 'fastify';
import type { OperationRecord } from '../../store/store.js';
import { authorize } from '../auth.js';
import { principalOf, setOperationHeaders, type ServerContext } from '../context.js';

const BASE = '/subscriptions/:subscriptionId/providers/Microsoft.Network/locations/:location';

interface Params {
  subscriptionId: string;
  location: string;
  operationId: string;
}

/**
 * The long-running-operation resources the create, stop and delete responses point at:
 * `operations/{id}` (Azure-AsyncOperation: a status body) and `operationResults/{id}`
 * (Location: 202 while running, then the final answer).
 */
export const operationRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  async function load(params: Params, principal: Parameters<typeof authorize>[1]) {
    await authorize(ctx.control, principal, params.subscriptionId, 'Reader');
    const op = await ctx.control.getOperation(
      params.subscriptionId.toLowerCase(),
      params.location,
      params.operationId,
    );
    return op;
  }

  app.get<{ Params: Params }>(`${BASE}/operations/:operationId`, async (request) => {
    const op = await load(request.params, principalOf(request));
    return statusBody(op);
  });

  app.get<{ Params: Params }>(`${BASE}/operationResults/:operationId`, async (request, reply) => {
    const op = await load(request.params, principalOf(request));
    switch (op.status) {
      case 'InProgress':
        setOperationHeaders(request, reply, op, 'Location');
        return reply.code(202).send();
      case 'Succeeded':
        return reply.code(op.kind === 'delete' ? 204 : 200).send();
      case 'Failed': {
        const err = op.error ?? { code: 'InternalServerError', message: 'The operation failed' };
        return reply.code(500).send({ error: err });
      }
    }
  });
};

function statusBody(op: OperationRecord) {
  return {
    id: op.id,
    name: op.id,
    status: op.status,
    startTime: op.createdAt.toISOString(),
    ...(op.status === 'InProgress' ? {} : { endTime: op.updatedAt.toISOString() }),
    ...(op.error ? { error: { code: op.error.code, message: op.error.message } } : {}),
  };
}
