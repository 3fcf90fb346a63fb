import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { invalidEnrollmentToken } from '../../control/control-plane.js';
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
export const agentRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { control, hub, sockets, limits, maxVmsPerSubscription } = ctx;

  /**
   * The enrollment token is checked before the body is read: this route is open to anyone, and
   * a body is held in memory while it arrives.
   */
  async function checkEnrollmentToken(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const record = await control.findEnrollmentToken(bearerToken(request));
    if (!record) throw limits.failedLogin(request, reply, invalidEnrollmentToken());
    limits.agent(request, reply);
    control.checkEnrollmentUses(record);
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
    const enrolled = await control.enroll(request.enrollmentToken!, request.body, {
      sourceIp: request.ip,
      maxVmsPerSubscription,
    });
    return reply.code(201).send(enrolled);
  });

  /**
   * A failed credential counts as a failed login of the address; a valid one is charged to the
   * address's agent bucket only, so guessing from an address never refuses its real agents.
   */
  async function authenticateAgent(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = bearerToken(request);
    const vm = token ? await control.agentVm(token) : undefined;
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
