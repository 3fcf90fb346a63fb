import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import {
  CreateEnrollmentTokenSchema,
  CreateSubscriptionSchema,
  CreateTokenSchema,
  type CreateEnrollmentTokenInput,
  type CreateTokenInput,
} from '../../model/arm.js';
import { authorize, requireAdmin } from '../auth.js';
import { absoluteUrl, callerOf, principalOf, type ServerContext } from '../context.js';
import { agentView, enrollmentTokenView } from '../views.js';

const SUB = '/api/v1/subscriptions/:subscriptionId';

interface SubParams {
  subscriptionId: string;
}

/** wirewatch's own API (docs/api.md "Native API"): tenants, tokens, agents, audit. */
export const nativeRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { control } = ctx;

  api.post(
    '/api/v1/subscriptions',
    { schema: { body: CreateSubscriptionSchema }, config: { need: 'Admin' } },
    async (request, reply) => {
      requireAdmin(principalOf(request));
      const s = await control.subscriptions.create(request.body.displayName, callerOf(request));
      return reply.code(201).send({
        subscriptionId: s.id,
        displayName: s.displayName,
        createdAt: s.createdAt.toISOString(),
      });
    },
  );

  api.get('/api/v1/subscriptions', async (request) => {
    const principal = principalOf(request);
    const all = await control.subscriptions.list();
    const visible =
      principal.kind === 'admin' ? all : all.filter((s) => s.id === principal.subscriptionId);
    return {
      value: visible.map((s) => ({
        subscriptionId: s.id,
        id: `/subscriptions/${s.id}`,
        displayName: s.displayName,
        state: 'Enabled',
        createdAt: s.createdAt.toISOString(),
      })),
    };
  });

  api.post<{ Params: SubParams; Body: CreateTokenInput }>(
    `${SUB}/tokens`,
    { schema: { body: CreateTokenSchema }, config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const { record, token } = await control.tokens.create(
        subscriptionId,
        request.body.role,
        callerOf(request),
      );
      return reply
        .code(201)
        .send({ tokenId: record.id, token, role: request.body.role, subscriptionId });
    },
  );

  api.delete<{ Params: SubParams & { tokenId: string } }>(
    `${SUB}/tokens/:tokenId`,
    { config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      // At once in this process: cached lookups and open live streams of the token go (app.ts
      // listens to the revocation).
      await control.tokens.revoke(subscriptionId, request.params.tokenId, callerOf(request));
      return reply.code(204).send();
    },
  );

  api.post<{ Params: SubParams; Body: CreateEnrollmentTokenInput }>(
    `${SUB}/enrollmentTokens`,
    { schema: { body: CreateEnrollmentTokenSchema }, config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const { record, token } = await control.enrollmentTokens.create(
        subscriptionId,
        request.body,
        callerOf(request),
      );
      return reply.code(201).send({ ...enrollmentTokenView(record), token });
    },
  );

  api.get<{ Params: SubParams }>(`${SUB}/enrollmentTokens`, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
    const records = await control.enrollmentTokens.list(
      request.params.subscriptionId.toLowerCase(),
    );
    return { value: records.map((r) => enrollmentTokenView(r)) };
  });

  api.delete<{ Params: SubParams & { tokenId: string } }>(
    `${SUB}/enrollmentTokens/:tokenId`,
    { config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      await control.enrollmentTokens.revoke(
        subscriptionId,
        request.params.tokenId,
        callerOf(request),
      );
      return reply.code(204).send();
    },
  );

  api.get<{ Params: SubParams }>(`${SUB}/agents`, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
    const vms = await control.hosts.listAgents(request.params.subscriptionId);
    return { value: vms.map((vm) => agentView(vm, control.hosts.isConnected(vm.id))) };
  });

  api.get<{ Params: SubParams; Querystring: Record<string, unknown> }>(
    `${SUB}/audit`,
    async (request) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const after = request.query['$skipToken'];
      const top = Number(request.query['$top'] ?? 100);
      const limit = Number.isInteger(top) && top > 0 ? Math.min(top, 1000) : 100;
      const page = await control.listAudit(subscriptionId, {
        limit,
        after: typeof after === 'string' ? after : null,
      });
      const path = request.url.split('?')[0]!;
      return {
        value: page.items.map((a) => ({
          id: a.id,
          time: a.at.toISOString(),
          actor: a.actor,
          action: a.action,
          resourceId: a.resourceId,
          sourceIp: a.sourceIp,
          detail: a.detail,
        })),
        ...(page.next
          ? {
              nextLink: absoluteUrl(
                request,
                `${path}?$top=${limit}&$skipToken=${encodeURIComponent(page.next)}`,
              ),
            }
          : {}),
      };
    },
  );
};
