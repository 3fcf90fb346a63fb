import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { generateToken, hashToken } from '../../control/tokens.js';
import { vmResourceId } from '../../control/resource-ids.js';
import { CHANNEL_PATH, ENROLL_PATH, EnrollRequestSchema } from '../../model/channel.js';
import { WirewatchError } from '../../model/errors.js';
import type { VmRecord } from '../../store/store.js';
import { bearerToken } from '../auth.js';
import type { ServerContext } from '../context.js';

declare module 'fastify' {
  interface FastifyRequest {
    agentVm?: VmRecord;
  }
}

/**
 * The agents' side of the server: enrollment (with a per-subscription enrollment token) and
 * the channel (with the agent's own credential). Neither accepts an API token, and an agent
 * credential opens nothing else.
 */
export const agentRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, control, hub } = ctx;

  api.post(ENROLL_PATH, { schema: { body: EnrollRequestSchema } }, async (request, reply) => {
    const token = bearerToken(request);
    const record = token ? await store.findEnrollmentTokenByHash(hashToken(token)) : undefined;
    const body = request.body;
    if (
      !record ||
      record.revokedAt ||
      record.expiresAt.getTime() < Date.now() ||
      record.subscriptionId !== body.subscriptionId.toLowerCase()
    ) {
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        'The enrollment token is not valid for this subscription, has expired or was revoked',
      );
    }
    const existing = await store.getVm(record.subscriptionId, body.resourceGroup, body.name);
    if (existing && hub.isConnected(existing.id)) {
      throw new WirewatchError(
        'AgentAlreadyConnected',
        `VM '${existing.name}' has a connected agent; stop it (or delete the VM) before enrolling another`,
        { target: 'name' },
      );
    }
    const credential = generateToken('agent');
    const vm = await store.upsertVm({
      id: existing?.id ?? randomUUID(),
      subscriptionId: record.subscriptionId,
      resourceGroup: body.resourceGroup,
      name: body.name,
      location: existing?.location ?? body.location,
      hostname: body.hostname,
      captureRoot: body.captureRoot,
      credentialHash: hashToken(credential),
      createdAt: existing?.createdAt ?? new Date(),
      lastSeenAt: null,
    });
    await control.ensureWatcherFor(vm.subscriptionId, vm.location);
    const vmId = vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name);
    await store.appendAudit({
      id: randomUUID(),
      subscriptionId: vm.subscriptionId,
      at: new Date(),
      actor: `enrollment:${record.id}`,
      action: 'virtualMachine.enroll',
      resourceId: vmId,
      sourceIp: request.ip,
      detail: { hostname: vm.hostname, reenrolled: existing !== undefined },
    });
    return reply.code(201).send({ agentId: vm.id, vmId, credential });
  });

  async function authenticateAgent(request: FastifyRequest): Promise<void> {
    const token = bearerToken(request);
    const vm = token ? await store.getVmByCredentialHash(hashToken(token)) : undefined;
    if (!vm) {
      throw new WirewatchError(
        'AuthenticationFailed',
        'The agent credential is not valid (the VM may have been deleted)',
      );
    }
    request.agentVm = vm;
  }

  app.route({
    method: 'GET',
    url: CHANNEL_PATH,
    preValidation: authenticateAgent,
    // A plain GET (no upgrade) gets Azure's error body, like every other route.
    handler: () => {
      throw new WirewatchError(
        'InvalidRequestContent',
        'The agent channel is a WebSocket: send an upgrade request',
      );
    },
    wsHandler: (socket, request) => {
      hub.attach(request.agentVm!, socket);
    },
  });
};
