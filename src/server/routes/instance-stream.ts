/**
 * The live stream of a scale-set capture (`GET {capture}/stream` on its parent): one agent
 * stream per running instance, re-framed as they come into one pcapng stream with an interface
 * per instance named `{ss}_{id}` (src/pcap/pcapng-relay.ts), so `| wireshark -k -i -` shows the
 * whole group. Packets are in arrival order, each instance's in its own order: a time-ordered
 * merge would hold every instance back while one is quiet.
 *
 * Instances that start running later (late joiners, or instances whose agent was away) are
 * looked for every {@link JOIN_POLL_MS}; each gets its interface (an IDB) before its first
 * packet. The stream ends when the capture is no longer running and every instance's stream has
 * ended. A slow viewer loses whole frames of packets, counted, never an IDB. Text frames are the
 * single-VM stream's: `stats` (summed over the instances, at most about once a second) and
 * `end`, which adds `instances`: `[{instanceId, packets, dropped, error?}]`.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import type { ControlPlane, InstanceSession } from '../../control/control-plane.js';
import type { AgentMessage } from '../../model/channel.js';
import { WirewatchError } from '../../model/errors.js';
import { PcapngRelay, type PcapngRelayInput } from '../../pcap/pcapng-relay.js';
import type { SessionRecord } from '../../store/store.js';
import type { AgentHub } from '../agent-hub.js';
import type { AgentStream } from '../file-relay.js';
import { runningInstances } from './capture-instances.js';

type StreamStats = Extract<AgentMessage, { type: 'streamStats' }>;

/** How often a running capture is looked at for instances that started running since. */
export const JOIN_POLL_MS = 2000;
/** At most one summed `stats` frame this often. */
const STATS_EVERY_MS = 1000;

/** One instance being streamed. */
interface InstanceFeed {
  readonly instanceId: string;
  readonly input: PcapngRelayInput;
  stream: AgentStream | undefined;
  packets: number;
  /** Dropped by the agent (its last report) and here. */
  agentDropped: number;
  droppedHere: number;
  lagMs: number;
  ended: boolean;
  error?: { code: string; message: string };
}

export interface InstanceStreamOptions {
  readonly socket: WebSocket;
  readonly parent: SessionRecord;
  readonly control: ControlPlane;
  readonly hub: AgentHub;
  readonly log: FastifyBaseLogger;
  /** Bytes waiting for the viewer above which packets are dropped for it. */
  readonly maxBuffered: number;
}

/**
 * Relays every running instance of `parent` to one viewer until the capture stops or the viewer
 * goes; returns an id for the viewer's stream (the audit's `streamId`).
 */
export function relayInstances(o: InstanceStreamOptions): string {
  const { socket, parent, control, hub, log } = o;
  const viewerId = randomUUID();
  const relay = new PcapngRelay();
  const feeds = new Map<string, InstanceFeed>();
  let over = false;
  let polling = false;
  let lastStats = 0;

  const send = (data: Buffer) => {
    if (socket.readyState === socket.OPEN) socket.send(data, { binary: true });
  };
  const sendText = (event: Record<string, unknown>) => {
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event));
  };
  const totals = () => {
    let packets = 0;
    let dropped = 0;
    let lagMs = 0;
    for (const f of feeds.values()) {
      packets += Math.max(0, f.packets - f.droppedHere);
      dropped += f.agentDropped + f.droppedHere;
      if (!f.ended) lagMs = Math.max(lagMs, f.lagMs);
    }
    return { packets, dropped, lagMs };
  };

  const finish = () => {
    if (over) return;
    over = true;
    clearInterval(timer);
    for (const f of feeds.values()) f.stream?.stop();
    const { packets, dropped } = totals();
    const instances = [...feeds.values()].map((f) => ({
      instanceId: f.instanceId,
      packets: Math.max(0, f.packets - f.droppedHere),
      dropped: f.agentDropped + f.droppedHere,
      ...(f.error === undefined ? {} : { error: f.error }),
    }));
    sendText({ type: 'end', packets, dropped, instances });
    log.info(
      { sessionId: parent.id, packets, dropped, instances: feeds.size },
      'live stream ended',
    );
    if (socket.readyState === socket.OPEN) socket.close(1000, 'end');
  };

  /** Opens a stream for each running instance that has none; ends when none can come. */
  const look = async () => {
    if (over || polling) return;
    polling = true;
    try {
      // Gone (deleted), or another capture of the same name since: nothing more will come.
      const found = await control.getCapture(parent).catch((err: unknown) => {
        if (err instanceof WirewatchError && err.code === 'ResourceNotFound') return undefined;
        throw err;
      });
      const current = found?.id === parent.id ? found : undefined;
      const running = current === undefined ? [] : await runningInstances(current, control);
      for (const instance of running) {
        if (!feeds.has(instance.session.id) && hub.isConnected(instance.session.vmId)) {
          open(instance);
        }
      }
      const active = current?.status === 'Running' || current?.status === 'NotStarted';
      if (!active && [...feeds.values()].every((f) => f.ended)) finish();
    } catch (err) {
      log.warn({ err, sessionId: parent.id }, 'live stream could not look for instances');
    } finally {
      polling = false;
    }
  };

  const open = (instance: InstanceSession) => {
    const feed: InstanceFeed = {
      instanceId: instance.instanceId,
      input: relay.addInput(instance.vmName),
      stream: undefined,
      packets: 0,
      agentDropped: 0,
      droppedHere: 0,
      lagMs: 0,
      ended: false,
    };
    feeds.set(instance.session.id, feed);
    const end = (error?: { code: string; message: string }) => {
      feed.ended = true;
      if (error !== undefined) feed.error = error;
      void look();
    };
    feed.stream = hub.files.openStream(instance.session.vmId, instance.session.id, {
      onData: (data) => {
        if (over || feed.ended) return;
        if (feed.input.interfaceId === undefined) {
          try {
            send(feed.input.push(data).blocks);
          } catch (err) {
            log.warn({ err, sessionId: instance.session.id }, 'agent stream without a pcap header');
            feed.stream?.stop();
            end({
              code: 'CaptureFileUnavailable',
              message: `The agent of instance ${instance.instanceId} sent no pcap header`,
            });
          }
          return;
        }
        if (socket.bufferedAmount > o.maxBuffered) {
          feed.droppedHere += feed.input.count(data);
          return;
        }
        send(feed.input.push(data).blocks);
      },
      onStats: (stats: StreamStats) => {
        feed.packets = stats.packets;
        feed.agentDropped = stats.dropped;
        feed.lagMs = stats.lagMs;
        if (over || Date.now() - lastStats < STATS_EVERY_MS) return;
        lastStats = Date.now();
        sendText({ type: 'stats', ...totals() });
      },
      onEnd: (e) => {
        feed.packets = e.packets;
        feed.agentDropped = e.dropped;
        end(e.error === undefined ? undefined : instanceError(e.error, instance.instanceId));
      },
      onError: (error) => end({ code: error.code, message: error.message }),
    });
  };

  const timer = setInterval(() => void look(), JOIN_POLL_MS);
  timer.unref();
  send(relay.header());
  void look();
  socket.on('close', () => {
    if (over) return;
    over = true;
    clearInterval(timer);
    for (const f of feeds.values()) f.stream?.stop();
  });
  socket.on('error', (err) => log.debug({ err }, 'viewer socket error'));
  return viewerId;
}

/** An instance agent's reason for ending its stream, without the host's paths (as a VM's). */
function instanceError(
  error: { code: string; message: string },
  instanceId: string,
): { code: string; message: string } {
  if (error.code === 'CaptureNotRunning') {
    return { code: error.code, message: `Instance ${instanceId} is no longer capturing` };
  }
  return {
    code: 'CaptureFileUnavailable',
    message: `The agent of instance ${instanceId} could not stream its capture (${error.code})`,
  };
}
