import { randomUUID } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { generateToken, hashToken } from '../../control/tokens.js';
import { vmResourceId } from '../../control/resource-ids.js';
import {
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PATH,
  ENROLL_PATH,
  EnrollRequestSchema,
} from '../../model/channel.js';
import { WirewatchError } from '../../model/errors.js';
import type { EnrollmentTokenRecord, VmRecord } from '../../store/store.js';
import { bearerToken } from '../auth.js';
import type { ServerContext } from '../context.js';

/**
 * The largest message an agent may send on its channel: the protocol's limit
 * (CHANNEL_MAX_PAYLOAD_BYTES in src/model/channel.ts, where the sizes are worked out).
 */
export const AGENT_CHANNEL_MAX_PAYLOAD = CHANNEL_MAX_PAYLOAD_BYTES;

/** The largest enrollment body: EnrollRequestSchema's strings fit in well under 16 KiB. */
export const ENROLL_BODY_LIMIT = 64 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    agentVm?: VmRecord;
    /** The enrollment token of an enrollment, checked before its body was read. */
    enrollmentToken?: EnrollmentTokenRecord;
  }
}

/**
 * The agents' side of the server: enrollment (with a per-subscription enrollment token) and
 * the channel (with the agent's own credential). Neither accepts an API token, and an agent
 * credential opens nothing else.
 */
function alreadyEnrolled(vm: VmRecord): WirewatchError {
  return new WirewatchError(
    'VmAlreadyEnrolled',
    `VM '${vm.name}' in resource group '${vm.resourceGroup}' is enrolled already; enroll this host under another name, or have an Owner create a takeover token for this VM (wirewatch admin enroll-token create --takeover -g ${vm.resourceGroup} -n ${vm.name})`,
    { target: 'name' },
  );
}

export const agentRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { store, control, hub, sockets, limits, maxVmsPerSubscription } = ctx;

  const invalidEnrollmentToken = () =>
    new WirewatchError(
      'InvalidEnrollmentToken',
      'The enrollment token is not valid for this subscription, has expired, was revoked or was used',
    );

  /**
   * The enrollment token is checked before the body is read: this route is open to anyone, and
   * a body is held in memory while it arrives.
   */
  async function checkEnrollmentToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request);
    const record = token ? await store.findEnrollmentTokenByHash(hashToken(token)) : undefined;
    if (!record || record.revokedAt || record.usedAt || record.expiresAt.getTime() <= Date.now()) {
      throw limits.failedLogin(request, reply, invalidEnrollmentToken());
    }
    limits.agent(request, reply);
    if (!record.takeover && record.maxUses !== null && record.uses >= record.maxUses) {
      throw new WirewatchError(
        'EnrollmentLimitReached',
        `This enrollment token has enrolled ${record.uses} VMs, all it may (maxUses ${record.maxUses}); create another enrollment token`,
      );
    }
    request.enrollmentToken = record;
  }

  const enroll = {
    schema: { body: EnrollRequestSchema },
    onRequest: checkEnrollmentToken,
    // An enrollment is a few names and a path (EnrollRequestSchema): far below the server's
    // 1 MiB body limit, which anyone holding connections here could otherwise fill.
    bodyLimit: ENROLL_BODY_LIMIT,
  };

  api.post(ENROLL_PATH, enroll, async (request, reply) => {
    const record = request.enrollmentToken!;
    const body = request.body;
    if (record.subscriptionId !== body.subscriptionId.toLowerCase()) {
      // The same code as any other refusal of the token, but naming the field that differs.
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        'The enrollment token is not valid for the subscriptionId in the body; enroll into the subscription the token was created in',
        { target: 'subscriptionId' },
      );
    }
    const takeover = record.takeover;
    if (
      takeover &&
      // Names compare case-insensitively, as the store compares them.
      (takeover.resourceGroup.toLowerCase() !== body.resourceGroup.toLowerCase() ||
        takeover.name.toLowerCase() !== body.name.toLowerCase())
    ) {
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        `This takeover token enrolls only VM '${takeover.name}' in resource group '${takeover.resourceGroup}'`,
        { target: 'name' },
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
    if (existing && !takeover) throw alreadyEnrolled(existing);
    // A takeover token works once, even when two hosts race with it.
    if (takeover && !(await store.useEnrollmentToken(record.id, new Date()))) {
      throw new WirewatchError(
        'InvalidEnrollmentToken',
        'The enrollment token is not valid for this subscription, has expired, was revoked or was used',
      );
    }
    const credential = generateToken('agent');
    const candidate: VmRecord = {
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
    };
    // Only a takeover replaces a VM; a plain enrollment inserts or, losing a race, is refused.
    // A new VM is one of the token's uses and counts against the subscription's VMs.
    const vm = existing
      ? await store.upsertVm(candidate)
      : await store.createVm(candidate, {
          enrollmentTokenId: record.id,
          maxVmsPerSubscription,
        });
    if (!vm) {
      const winner = await store.getVm(record.subscriptionId, body.resourceGroup, body.name);
      throw alreadyEnrolled(winner ?? candidate);
    }
    await control.ensureWatcherFor(vm.subscriptionId, vm.location);
    const vmId = vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name);
    await store.appendAudit({
      id: randomUUID(),
      subscriptionId: vm.subscriptionId,
      at: new Date(),
      actor: `enrollment:${record.id}`,
      action: existing ? 'virtualMachine.takeover' : 'virtualMachine.enroll',
      resourceId: vmId,
      sourceIp: request.ip,
      detail: existing
        ? {
            hostname: vm.hostname,
            captureRoot: vm.captureRoot,
            previousHostname: existing.hostname,
            previousCaptureRoot: existing.captureRoot,
            previousLastSeen: existing.lastSeenAt?.toISOString() ?? null,
          }
        : { hostname: vm.hostname, captureRoot: vm.captureRoot },
    });
    return reply.code(201).send({ agentId: vm.id, vmId, credential });
  });

  /**
   * A failed credential counts as a failed login of the address; a valid one is charged to the
   * address's agent bucket only, so guessing from an address never refuses its real agents.
   */
  async function authenticateAgent(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request);
    const vm = token ? await store.getVmByCredentialHash(hashToken(token)) : undefined;
    if (!vm) {
      throw limits.failedLogin(
        request,
        reply,
        new WirewatchError(
          'AuthenticationFailed',
          'The agent credential is not valid (the VM may have been deleted)',
        ),
      );
    }
    limits.agent(request, reply);
    request.agentVm = vm;
  }

  app.route({
    method: 'GET',
    url: CHANNEL_PATH,
    config: { webSocket: true },
    preValidation: authenticateAgent,
    handler: (request, reply) => {
      // A plain GET (no upgrade) gets Azure's error body, like every other route.
      if (!sockets.isUpgrade(request)) {
        throw new WirewatchError(
          'InvalidRequestContent',
          'The agent channel is a WebSocket: send an upgrade request',
        );
      }
      const vm = request.agentVm!;
      sockets.accept(
        request,
        reply,
        { owner: { kind: 'vm', vmId: vm.id }, maxPayload: AGENT_CHANNEL_MAX_PAYLOAD },
        (socket) => hub.attach(vm, socket),
      );
    },
  });
};
