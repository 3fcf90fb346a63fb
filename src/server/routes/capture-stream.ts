/**
 * Live stream of a running capture: `GET {capture}/stream` as a WebSocket (docs/api.md "Live
 * stream"). Binary frames carry a pcap stream (the header, then whole records, as the agent
 * reads them from the capture file); text frames `{"type":"stats",…}` about every second and
 * `{"type":"end",…}` last, before the server closes. A scale set's capture streams all its
 * instances as one pcapng stream (instance-stream.ts).
 *
 * A slow viewer never slows the capture or the agent's channel, which carries every other
 * session too: while more than {@link MAX_VIEWER_BUFFERED} bytes wait for this viewer, whole
 * frames are dropped for it (their records counted; the header is always kept), and the agent
 * drops on its side when the channel itself falls behind. `dropped` is the sum of both.
 */
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { captureResourceId } from '../../control/resource-ids.js';
import type { AgentMessage } from '../../model/channel.js';
import { WirewatchError } from '../../model/errors.js';
import { FILE_HEADER_LENGTH, parseFileHeader } from '../../pcap/format.js';
import { countWholeRecords } from '../../pcap/record-walker.js';
import type { ByteOrder } from '../../pcap/types.js';
import type { SessionRecord } from '../../store/store.js';
import type { AgentHub } from '../agent-hub.js';
import { auditRequest, principalOf, type ServerContext } from '../context.js';
import { authorizeCapture, CAPTURE_ROUTE, type CaptureParams } from './capture-route.js';
import { isScaleSetCapture, runningInstances } from './capture-instances.js';
import { relayInstances } from './instance-stream.js';

const STREAM = `${CAPTURE_ROUTE}/stream`;

/** Bytes waiting for a viewer above which its frames are dropped. */
export const MAX_VIEWER_BUFFERED = 4 * 1024 * 1024;

/**
 * The largest frame a viewer may send: it sends nothing but control frames (close, pong; at
 * most 125 bytes), so anything larger closes the stream with 1009 before it is buffered.
 */
export const VIEWER_MAX_PAYLOAD = 1024;

declare module 'fastify' {
  interface FastifyRequest {
    /** The capture a stream request is for, checked before the upgrade. */
    streamedCapture?: SessionRecord;
  }
}

type StreamStats = Extract<AgentMessage, { type: 'streamStats' }>;
type StreamEnd = Extract<AgentMessage, { type: 'streamEnd' }>;

export const captureStreamRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const { control, hub, sockets } = ctx;

  /** Everything that can refuse a stream is checked here, so it is refused before the upgrade. */
  const check = async (request: FastifyRequest) => {
    const params = request.params as CaptureParams;
    const ref = await authorizeCapture(ctx, request, params, 'Reader');
    const session = await control.getCapture(ref);
    if (session.status !== 'Running') {
      throw new WirewatchError(
        'CaptureNotRunning',
        `Packet capture '${session.name}' is ${session.status}; only a running capture can be streamed${
          session.status === 'NotStarted' ? ' (retry once it runs)' : ''
        }`,
        { target: 'packetCaptureName' },
      );
    }
    if (isScaleSetCapture(session)) {
      const running = await runningInstances(session, control);
      if (!running.some((i) => hub.isConnected(i.session.vmId))) {
        throw new WirewatchError(
          'AgentNotConnected',
          running.length === 0
            ? `No instance runs packet capture '${session.name}' yet; retry once one does`
            : `The agents of the instances that run packet capture '${session.name}' are not connected; retry when they are`,
        );
      }
    } else if (!hub.isConnected(session.vmId)) {
      throw new WirewatchError(
        'AgentNotConnected',
        `The agent of the VM that runs packet capture '${session.name}' is not connected; retry when it is`,
      );
    }
    request.streamedCapture = session;
  };

  app.route({
    method: 'GET',
    url: STREAM,
    config: { webSocket: true },
    preHandler: check,
    handler: (request, reply) => {
      // A plain GET (no upgrade) gets Azure's error body, like every other route.
      if (!sockets.isUpgrade(request)) {
        throw new WirewatchError(
          'InvalidRequestContent',
          'The live stream is a WebSocket: send an upgrade request (wirewatch capture stream does)',
        );
      }
      const session = request.streamedCapture!;
      const owner = { kind: 'token', tokenId: principalOf(request).tokenId } as const;
      sockets.accept(request, reply, { owner, maxPayload: VIEWER_MAX_PAYLOAD }, (socket) => {
        const viewer = isScaleSetCapture(session)
          ? relayInstances({
              socket,
              parent: session,
              control,
              hub,
              log: request.log,
              maxBuffered: MAX_VIEWER_BUFFERED,
            })
          : relayStream(socket, session, hub, request.log);
        if (viewer === undefined) return;
        auditRequest(control, request, {
          subscriptionId: session.subscriptionId,
          action: 'packetCapture.stream',
          resourceId: captureResourceId(
            session.subscriptionId,
            session.resourceGroup,
            session.watcherName,
            session.name,
          ),
          detail: { streamId: viewer },
        }).catch((err: unknown) => request.log.error({ err }, 'audit of a stream failed'));
      });
    },
  });
};

/**
 * Relays one agent stream to one viewer until either ends. Returns the stream id, or undefined
 * when the agent could not be asked (the viewer has been told and the socket closed).
 */
function relayStream(
  socket: WebSocket,
  session: SessionRecord,
  hub: AgentHub,
  log: FastifyBaseLogger,
): string | undefined {
  let byteOrder: ByteOrder | undefined;
  /** Packets dropped here, for this viewer. */
  let droppedHere = 0;
  let over = false;

  const sendText = (event: Record<string, unknown>) => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event));
  };
  const finish = (
    counts: { packets: number; dropped: number },
    error?: { code: string; message: string },
  ) => {
    if (over) return;
    over = true;
    sendText({
      type: 'end',
      packets: Math.max(0, counts.packets - droppedHere),
      dropped: counts.dropped + droppedHere,
      ...(error === undefined ? {} : { error }),
    });
    log.info(
      { sessionId: session.id, droppedHere, ...counts, ...(error ? { error: error.code } : {}) },
      'live stream ended',
    );
    if (socket.readyState === socket.OPEN)
      socket.close(1000, error === undefined ? 'end' : 'error');
  };

  const stream = hub.files.openStream(session.vmId, session.id, {
    onData: (data) => {
      if (over) return;
      if (byteOrder === undefined) {
        // The first frame is the pcap header: always relayed, and it says how to read the rest.
        try {
          byteOrder = parseFileHeader(data.subarray(0, FILE_HEADER_LENGTH)).byteOrder;
        } catch (err) {
          log.warn({ err, sessionId: session.id }, 'agent stream did not start with a pcap header');
          stream?.stop();
          finish(
            { packets: 0, dropped: 0 },
            {
              code: 'CaptureFileUnavailable',
              message: 'The agent sent no pcap header; the stream cannot be read',
            },
          );
          return;
        }
        socket.send(data, { binary: true });
        return;
      }
      if (socket.bufferedAmount > MAX_VIEWER_BUFFERED) {
        droppedHere += countWholeRecords(data, byteOrder);
        return;
      }
      socket.send(data, { binary: true });
    },
    onStats: (stats: StreamStats) => {
      if (over) return;
      sendText({
        type: 'stats',
        packets: Math.max(0, stats.packets - droppedHere),
        dropped: stats.dropped + droppedHere,
        lagMs: stats.lagMs,
      });
    },
    onEnd: (end: StreamEnd) => {
      finish(end, end.error === undefined ? undefined : viewerError(end.error, session));
    },
    onError: (error) => {
      finish({ packets: 0, dropped: 0 }, { code: error.code, message: error.message });
    },
  });
  // The viewer went away: the agent stops reading for it.
  socket.on('close', () => {
    over = true;
    stream?.stop();
  });
  socket.on('error', (err) => log.debug({ err }, 'viewer socket error'));
  return stream?.streamId;
}

/**
 * The agent's reason for ending a stream, as the viewer sees it: its message can name paths of
 * the host, so only a capture that stopped meanwhile keeps its code; the rest is the agent's
 * code in a message of the server's.
 */
function viewerError(
  error: { code: string; message: string },
  session: SessionRecord,
): { code: string; message: string } {
  if (error.code === 'CaptureNotRunning') {
    return {
      code: 'CaptureNotRunning',
      message: `Packet capture '${session.name}' is no longer running on its VM`,
    };
  }
  return {
    code: 'CaptureFileUnavailable',
    message: `The agent could not stream packet capture '${session.name}' (${error.code})`,
  };
}
