import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { PacketCaptureSchema, type PacketCaptureInput } from '../../model/arm.js';
import { WirewatchError } from '../../model/errors.js';
import {
  absoluteUrl,
  apiVersionOf,
  callerOf,
  setOperationHeaders,
  type ServerContext,
} from '../context.js';
import type { SessionRecord } from '../../store/store.js';
import { isScaleSetParent } from '../../control/control-plane.js';
import { captureStatusView, packetCaptureView, scaleSetStatusView } from '../views.js';
import { authorizeCapture, CAPTURE_ROUTE, type CaptureParams } from './capture-route.js';

const CAPTURE = CAPTURE_ROUTE;
const CAPTURES = CAPTURE_ROUTE.slice(0, CAPTURE_ROUTE.lastIndexOf('/'));

/** packetCaptures under a network watcher: Create, Get, List, Delete, Stop, queryStatus. */
export const packetCaptureRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { control } = ctx;

  /**
   * `$expand=status` (wirewatch's extension, as ARM's `$expand=instanceView`): each capture with
   * its queryStatus under `properties.status`, so that a list shows every state in one call.
   */
  const expandsStatus = (request: FastifyRequest<{ Querystring: Record<string, unknown> }>) => {
    const expand = request.query['$expand'];
    if (expand === undefined) return false;
    if (typeof expand === 'string' && expand.toLowerCase() === 'status') return true;
    throw new WirewatchError(
      'InvalidRequestContent',
      `$expand: ${JSON.stringify(expand)} is not supported; the one value is "status"`,
      { target: '$expand' },
    );
  };
  /** queryStatus: a scale-set capture's with its `instances`. */
  const statusOf = async (session: SessionRecord) => {
    if (!isScaleSetParent(session)) {
      return captureStatusView(session, control.isAgentConnected(session.vmId));
    }
    const instances = await control.instanceSessions(session);
    return scaleSetStatusView(
      session,
      instances.map((i) => ({ ...i, connected: control.isAgentConnected(i.session.vmId) })),
    );
  };
  const view = async (session: SessionRecord, withStatus: boolean) => {
    const body = packetCaptureView(session);
    if (!withStatus) return body;
    const status = await statusOf(session);
    return {
      ...body,
      properties: { ...(body['properties'] as Record<string, unknown>), status },
    };
  };
  const views = (sessions: readonly SessionRecord[], withStatus: boolean) =>
    Promise.all(sessions.map((s) => view(control.withLiveProgress(s), withStatus)));

  const allowed = (
    request: FastifyRequest,
    params: CaptureParams,
    need: 'Reader' | 'Contributor',
  ) => authorizeCapture(ctx, request, params, need);

  api.put<{ Params: CaptureParams; Body: PacketCaptureInput }>(
    CAPTURE,
    { schema: { body: PacketCaptureSchema }, config: { need: 'Contributor' } },
    async (request, reply) => {
      const ref = await allowed(request, request.params, 'Contributor');
      const result = await control.createCapture(ref, request.body, callerOf(request));
      const body = packetCaptureView(control.withLiveProgress(result.session));
      if (result.kind === 'exists') return reply.code(200).send(body);
      setOperationHeaders(request, reply, result.operation!, 'Azure-AsyncOperation');
      return reply.code(201).send(body);
    },
  );

  api.get<{ Params: CaptureParams; Querystring: Record<string, unknown> }>(
    CAPTURE,
    async (request) => {
      const ref = await allowed(request, request.params, 'Reader');
      const withStatus = expandsStatus(request);
      return view(await control.getCapture(ref), withStatus);
    },
  );

  api.get<{
    Params: Omit<CaptureParams, 'packetCaptureName'>;
    Querystring: Record<string, unknown>;
  }>(CAPTURES, async (request) => {
    const ref = await allowed(request, { ...request.params, packetCaptureName: 'list' }, 'Reader');
    const withStatus = expandsStatus(request);
    const skipToken = request.query['$skipToken'];
    const topText = request.query['$top'];
    const path = request.url.split('?')[0]!;
    const list = (after: string | null, limit: number) =>
      control.listCaptures(ref, { limit, after });
    // Azure's SDK reads one response and ignores nextLink (PacketCaptures_List is not pageable
    // there), so a plain list answers every capture; a client that asks for pages with $top
    // (or follows a $skipToken) gets pages linked by nextLink.
    if (topText === undefined && skipToken === undefined) {
      const value: Record<string, unknown>[] = [];
      let after: string | null = null;
      do {
        const page = await list(after, ctx.pageSize);
        value.push(...(await views(page.items, withStatus)));
        after = page.next;
      } while (after);
      return { value };
    }
    const top = topText === undefined ? ctx.pageSize : Number(topText);
    if (!Number.isInteger(top) || top < 1) {
      throw new WirewatchError(
        'InvalidRequestContent',
        `$top: ${JSON.stringify(topText)} is not a whole number of at least 1`,
        { target: '$top' },
      );
    }
    const limit = Math.min(top, ctx.pageSize);
    const page = await list(typeof skipToken === 'string' ? skipToken : null, limit);
    return {
      value: await views(page.items, withStatus),
      ...(page.next
        ? {
            nextLink: absoluteUrl(
              request,
              `${path}?api-version=${encodeURIComponent(apiVersionOf(request))}${withStatus ? '&$expand=status' : ''}&$top=${limit}&$skipToken=${encodeURIComponent(page.next)}`,
            ),
          }
        : {}),
    };
  });

  api.delete<{ Params: CaptureParams }>(
    CAPTURE,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const ref = await allowed(request, request.params, 'Contributor');
      const result = await control.deleteCapture(ref, callerOf(request));
      if (result.kind !== 'pending') return reply.code(204).send();
      setOperationHeaders(request, reply, result.operation, 'Location');
      return reply.code(202).send();
    },
  );

  api.post<{ Params: CaptureParams }>(
    `${CAPTURE}/stop`,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const ref = await allowed(request, request.params, 'Contributor');
      const result = await control.stopCapture(ref, callerOf(request));
      if (!result.operation) return reply.code(200).send();
      setOperationHeaders(request, reply, result.operation, 'Location');
      return reply.code(202).send();
    },
  );

  api.post<{ Params: CaptureParams }>(
    `${CAPTURE}/queryStatus`,
    { config: { need: 'Reader' } },
    async (request) => {
      // Reading a status changes nothing, so Reader may do it (Azure asks for an action
      // permission; wirewatch's roles are coarser).
      const ref = await allowed(request, request.params, 'Reader');
      return statusOf(await control.getCapture(ref));
    },
  );
};
