import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { vmResourceId } from '../../control/resource-ids.js';
import { generateToken, hashToken } from '../../control/tokens.js';
import {
  CreateEnrollmentTokenSchema,
  CreateSubscriptionSchema,
  CreateTokenSchema,
  DEFAULT_ENROLLMENT_TOKEN_MAX_USES,
  type CreateEnrollmentTokenInput,
  type CreateTokenInput,
} from '../../model/arm.js';
import { WirewatchError } from '../../model/errors.js';
import type { EnrollmentTokenRecord } from '../../store/store.js';
import { authorize, requireAdmin } from '../auth.js';
import { absoluteUrl, principalOf, type ServerContext, auditRequest } from '../context.js';
import { agentView, enrollmentTokenId, enrollmentTokenView } from '../views.js';

const SUB = '/api/v1/subscriptions/:subscriptionId';

interface SubParams {
  subscriptionId: string;
}

/** wirewatch's own API (docs/api.md "Native API"): tenants, tokens, agents, audit. */
export const nativeRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, control, auth, sockets } = ctx;

  const audit = (
    request: FastifyRequest,
    subscriptionId: string,
    action: string,
    resourceId: string,
    detail: Record<string, unknown> = {},
  ) => auditRequest(store, request, { subscriptionId, action, resourceId, detail });

  api.post(
    '/api/v1/subscriptions',
    { schema: { body: CreateSubscriptionSchema }, config: { need: 'Admin' } },
    async (request, reply) => {
      requireAdmin(principalOf(request));
      const id = randomUUID();
      const createdAt = new Date();
      await store.createSubscription({ id, displayName: request.body.displayName, createdAt });
      await audit(request, id, 'subscription.create', `/subscriptions/${id}`, {
        displayName: request.body.displayName,
      });
      return reply.code(201).send({
        subscriptionId: id,
        displayName: request.body.displayName,
        createdAt: createdAt.toISOString(),
      });
    },
  );

  api.get('/api/v1/subscriptions', async (request) => {
    const principal = principalOf(request);
    const all = await store.listSubscriptions();
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
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const token = generateToken('api');
      const id = randomUUID();
      await store.createToken({
        id,
        subscriptionId,
        role: request.body.role,
        hash: hashToken(token),
        createdAt: new Date(),
        revokedAt: null,
      });
      await audit(
        request,
        subscriptionId,
        'token.create',
        `/subscriptions/${subscriptionId}/tokens/${id}`,
        {
          role: request.body.role,
        },
      );
      return reply.code(201).send({ tokenId: id, token, role: request.body.role, subscriptionId });
    },
  );

  api.delete<{ Params: SubParams & { tokenId: string } }>(
    `${SUB}/tokens/:tokenId`,
    { config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const revoked = await store.revokeToken(subscriptionId, request.params.tokenId, new Date());
      if (!revoked) {
        throw new WirewatchError(
          'ResourceNotFound',
          `Token '${request.params.tokenId}' was not found`,
          {
            target: 'tokenId',
          },
        );
      }
      // At once in this process: cached lookups and open live streams of the token go now.
      auth.revoke(request.params.tokenId);
      sockets.closeOwner({ kind: 'token', tokenId: request.params.tokenId }, 'token revoked');
      await audit(
        request,
        subscriptionId,
        'token.revoke',
        `/subscriptions/${subscriptionId}/tokens/${request.params.tokenId}`,
      );
      return reply.code(204).send();
    },
  );

  api.post<{ Params: SubParams; Body: CreateEnrollmentTokenInput }>(
    `${SUB}/enrollmentTokens`,
    { schema: { body: CreateEnrollmentTokenSchema }, config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const token = generateToken('enrollment');
      const id = randomUUID();
      const createdAt = new Date();
      const takeover = request.body.takeover ?? null;
      // A takeover token can replace a VM's credential: it lives an hour unless told otherwise.
      const hours = request.body.expiresInHours ?? (takeover ? 1 : 24);
      const expiresAt = new Date(createdAt.getTime() + hours * 3600_000);
      const record: EnrollmentTokenRecord = {
        id,
        subscriptionId,
        hash: hashToken(token),
        createdAt,
        expiresAt,
        revokedAt: null,
        takeover: takeover && { resourceGroup: takeover.resourceGroup, name: takeover.name },
        usedAt: null,
        maxUses: takeover ? 1 : (request.body.maxUses ?? DEFAULT_ENROLLMENT_TOKEN_MAX_USES),
        uses: 0,
      };
      await store.createEnrollmentToken(record);
      await audit(request, subscriptionId, 'enrollmentToken.create', enrollmentTokenId(record), {
        expiresAt: expiresAt.toISOString(),
        maxUses: record.maxUses,
        ...(takeover
          ? { takeover: vmResourceId(subscriptionId, takeover.resourceGroup, takeover.name) }
          : {}),
      });
      return reply.code(201).send({ ...enrollmentTokenView(record), token });
    },
  );

  api.get<{ Params: SubParams }>(`${SUB}/enrollmentTokens`, async (request) => {
    await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
    const records = await store.listEnrollmentTokens(request.params.subscriptionId.toLowerCase());
    return { value: records.map((r) => enrollmentTokenView(r)) };
  });

  api.delete<{ Params: SubParams & { tokenId: string } }>(
    `${SUB}/enrollmentTokens/:tokenId`,
    { config: { need: 'Owner' } },
    async (request, reply) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const { tokenId } = request.params;
      if (!(await store.revokeEnrollmentToken(subscriptionId, tokenId, new Date()))) {
        throw new WirewatchError(
          'ResourceNotFound',
          `Enrollment token '${tokenId}' was not found`,
          {
            target: 'tokenId',
          },
        );
      }
      await audit(
        request,
        subscriptionId,
        'enrollmentToken.revoke',
        `/subscriptions/${subscriptionId}/enrollmentTokens/${tokenId}`,
      );
      return reply.code(204).send();
    },
  );

  api.get<{ Params: SubParams }>(`${SUB}/agents`, async (request) => {
    await authorize(store, principalOf(request), request.params.subscriptionId, 'Reader');
    const vms = await store.listVms(request.params.subscriptionId.toLowerCase());
    return { value: vms.map((vm) => agentView(vm, control.isAgentConnected(vm.id))) };
  });

  api.get<{ Params: SubParams; Querystring: Record<string, unknown> }>(
    `${SUB}/audit`,
    async (request) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Owner');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const after = request.query['$skipToken'];
      const top = Number(request.query['$top'] ?? 100);
      const limit = Number.isInteger(top) && top > 0 ? Math.min(top, 1000) : 100;
      const page = await store.listAudit(subscriptionId, {
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
