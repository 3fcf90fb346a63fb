import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import type { AgentLink, ControlPlane } from '../control/control-plane.js';
import {
  BINARY_FRAME_ID_LENGTH,
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PROTOCOL_VERSION,
  MAX_BINARY_FRAME_DATA,
  parseAgentMessage,
  type ServerMessage,
} from '../model/channel.js';
import type { VmRecord } from '../store/store.js';
import { FileRelay } from './file-relay.js';

/**
 * What one agent may send. An agent past its budget is throttled: its socket is not read until
 * the budget has refilled, so what it sends waits in its own TCP buffers, never in the server's
 * memory, and every other agent goes on as before. An agent that sends many invalid messages, or
 * keeps too many messages waiting for the control plane, is disconnected.
 */
export interface AgentChannelLimits {
  /**
   * Messages (text and binary frames) per second, sustained. The most a legitimate agent sends
   * is a progress message per running session every 2 s: 5,000/s for the 10,000 sessions one VM
   * may run.
   */
  readonly messagesPerSecond: number;
  /** Messages that may come at once after a quiet spell. */
  readonly messageBurst: number;
  /** Bytes per second, sustained (downloads through the channel included). */
  readonly bytesPerSecond: number;
  /** Bytes that may come at once: two of the largest messages. */
  readonly byteBurst: number;
  /** Messages read but not yet handled by the control plane; beyond it the socket is not read. */
  readonly maxQueuedMessages: number;
  /**
   * Bytes of the messages read from one VM's agent but not yet handled by the control plane, over
   * all its connections (a closed one's messages are still handled); beyond it the agent's socket
   * is not read. Counting messages alone let 1000 parsed 8 MiB messages wait in memory.
   */
  readonly maxQueuedBytes: number;
  /** Invalid messages one connection may send before it is closed. */
  readonly maxInvalidMessages: number;
}

export const DEFAULT_AGENT_CHANNEL_LIMITS: AgentChannelLimits = {
  messagesPerSecond: 10_000,
  messageBurst: 20_000,
  bytesPerSecond: 64 * 1024 * 1024,
  byteBurst: 2 * CHANNEL_MAX_PAYLOAD_BYTES,
  maxQueuedMessages: 1000,
  maxQueuedBytes: 2 * CHANNEL_MAX_PAYLOAD_BYTES,
  maxInvalidMessages: 100,
};

/** WebSocket close code for a policy violation (RFC 6455). */
const POLICY_VIOLATION = 1008;

interface Connection {
  readonly vm: VmRecord;
  readonly socket: WebSocket;
  /** Messages of one agent are handled one after another, in order. */
  queue: Promise<void>;
  alive: boolean;
  /** Messages handed to the control plane and not yet handled. */
  queued: number;
  messageTokens: number;
  byteTokens: number;
  refilledAt: number;
  invalid: number;
  /** Why the socket is not read right now; undefined while it is. */
  paused: 'budget' | 'queue' | undefined;
  resumeTimer: NodeJS.Timeout | undefined;
  lastThrottleLogAt: number;
}

export interface AgentHubOptions {
  readonly pingIntervalMs?: number;
  readonly log: FastifyBaseLogger;
  readonly limits?: Partial<AgentChannelLimits>;
}

/** How often each agent has been held back, for metrics and tests. */
export interface AgentChannelCounters {
  /** Times an agent's socket was paused because it was over its budget. */
  throttled: number;
  /** Times an agent's socket was paused because the control plane was behind with its messages. */
  queueFull: number;
  /** Connections closed for misbehaviour (invalid messages). */
  closedForPolicy: number;
  /** Invalid messages received (not JSON, unknown, or breaking the schema). */
  invalidMessages: number;
}

/**
 * The server's end of the agent channels: one WebSocket per connected agent. Implements the
 * control plane's AgentLink; hands every valid message to the control plane, in order, except
 * file reads and live streams (binary frames, `readFileEnd`, `streamStats`, `streamEnd`), which
 * go straight to {@link files} in the order they arrive.
 */
export class AgentHub implements AgentLink {
  /** Reads of files that are only on an agent's host (downloads), and live streams. */
  readonly files = new FileRelay({ send: (vmId, message) => this.send(vmId, message) });
  readonly #connections = new Map<string, Connection>();
  /** Bytes of each VM's messages waiting for the control plane, over all its connections. */
  readonly #backlog = new Map<string, number>();
  readonly #log: FastifyBaseLogger;
  readonly #ping: NodeJS.Timeout;
  readonly #limits: AgentChannelLimits;
  readonly counters: AgentChannelCounters = {
    throttled: 0,
    queueFull: 0,
    closedForPolicy: 0,
    invalidMessages: 0,
  };
  #control: ControlPlane | undefined;

  constructor(options: AgentHubOptions) {
    this.#log = options.log;
    this.#limits = { ...DEFAULT_AGENT_CHANNEL_LIMITS, ...options.limits };
    // A peer that answers no ping for two rounds is gone (NAT timeouts, pulled cables).
    this.#ping = setInterval(() => this.#pingAll(), options.pingIntervalMs ?? 15_000);
    this.#ping.unref();
  }

  bind(control: ControlPlane): void {
    this.#control = control;
  }

  /** Bytes of a VM's agent messages read and not yet handled (for tests and metrics). */
  backlogBytes(vmId: string): number {
    return this.#backlog.get(vmId) ?? 0;
  }

  get connectedCount(): number {
    return this.#connections.size;
  }

  isConnected(vmId: string): boolean {
    return this.#connections.has(vmId);
  }

  send(vmId: string, message: ServerMessage): boolean {
    const connection = this.#connections.get(vmId);
    if (!connection || connection.socket.readyState !== connection.socket.OPEN) return false;
    connection.socket.send(JSON.stringify(message));
    return true;
  }

  /** Takes over an authenticated socket. A newer connection of the same agent replaces an older one. */
  attach(vm: VmRecord, socket: WebSocket): void {
    const previous = this.#connections.get(vm.id);
    if (previous) {
      previous.socket.close(4000, 'replaced by a newer connection');
      // Reads asked on the old socket will not be answered on the new one.
      this.files.disconnected(vm.id);
    }
    const connection: Connection = {
      vm,
      socket,
      queue: Promise.resolve(),
      alive: true,
      queued: 0,
      messageTokens: this.#limits.messageBurst,
      byteTokens: this.#limits.byteBurst,
      refilledAt: performance.now(),
      invalid: 0,
      paused: undefined,
      resumeTimer: undefined,
      lastThrottleLogAt: -Infinity,
    };
    this.#connections.set(vm.id, connection);
    const log = this.#log.child({ agentId: vm.id, vm: vm.name });
    log.info('agent connected');

    socket.on('pong', () => {
      connection.alive = true;
    });
    socket.on('message', (data, isBinary) => {
      connection.alive = true;
      const bytes = Buffer.isBuffer(data)
        ? data
        : Array.isArray(data)
          ? Buffer.concat(data)
          : Buffer.from(data);
      this.#spend(connection, bytes.length, log);
      if (isBinary) {
        // No agent sends a larger frame (src/model/channel.ts); one that does is not heard.
        if (bytes.length > BINARY_FRAME_ID_LENGTH + MAX_BINARY_FRAME_DATA) {
          this.#invalid(connection, bytes.length, log);
          return;
        }
        this.files.data(vm.id, bytes);
        return;
      }
      const text = bytes.toString('utf8');
      const message = parseAgentMessage(text);
      if (!message) {
        this.#invalid(connection, text.length, log);
        return;
      }
      if (message.type === 'readFileEnd') {
        this.files.end(vm.id, message);
        return;
      }
      if (message.type === 'streamStats' || message.type === 'streamEnd') {
        this.files.streamMessage(vm.id, message);
        return;
      }
      if (message.type === 'hello' && message.protocolVersion !== CHANNEL_PROTOCOL_VERSION) {
        log.warn({ protocolVersion: message.protocolVersion }, 'agent speaks another protocol');
        socket.close(4001, `protocol version ${CHANNEL_PROTOCOL_VERSION} required`);
        return;
      }
      connection.queued += 1;
      const size = bytes.length;
      this.#backlog.set(vm.id, this.backlogBytes(vm.id) + size);
      if (this.#queueFull(connection) && connection.paused === undefined) {
        this.counters.queueFull += 1;
        this.#pause(connection, 'queue');
      }
      connection.queue = connection.queue
        .then(async () => {
          const control = this.#control;
          if (!control) return;
          await control.agentMessage(vm, message);
          if (message.type === 'hello') {
            this.send(vm.id, {
              type: 'welcome',
              agentId: vm.id,
              serverTime: new Date().toISOString(),
            });
          }
        })
        .catch((err: unknown) => {
          log.error({ err, type: message.type }, 'agent message failed');
        })
        .finally(() => {
          connection.queued -= 1;
          const left = this.backlogBytes(vm.id) - size;
          if (left > 0) this.#backlog.set(vm.id, left);
          else this.#backlog.delete(vm.id);
          // Read again once the backlog is down to a tenth (in messages) and a half (in bytes);
          // the VM's current connection too, which an older one's backlog may have held back.
          this.#resumeIfDrained(connection);
          const current = this.#connections.get(vm.id);
          if (current !== undefined && current !== connection) this.#resumeIfDrained(current);
        });
    });
    socket.on('close', () => {
      clearTimeout(connection.resumeTimer);
      if (this.#connections.get(vm.id) === connection) {
        this.#connections.delete(vm.id);
        this.files.disconnected(vm.id);
        log.info('agent disconnected');
        void this.#control?.agentSeen(vm.id).catch(() => undefined);
      }
    });
    socket.on('error', (err) => log.warn({ err }, 'agent socket error'));
  }

  /** Waits for every queued agent message to be handled (for orderly shutdown and tests). */
  async drain(): Promise<void> {
    await Promise.all([...this.#connections.values()].map((c) => c.queue));
  }

  /**
   * Takes one message of `bytes` from the connection's budget (token buckets refilled at the
   * sustained rates). Over budget, the socket is paused for as long as the refill takes.
   */
  #spend(connection: Connection, bytes: number, log: FastifyBaseLogger): void {
    const limits = this.#limits;
    const now = performance.now();
    const elapsed = (now - connection.refilledAt) / 1000;
    connection.refilledAt = now;
    connection.messageTokens = Math.min(
      limits.messageBurst,
      connection.messageTokens + elapsed * limits.messagesPerSecond,
    );
    connection.byteTokens = Math.min(
      limits.byteBurst,
      connection.byteTokens + elapsed * limits.bytesPerSecond,
    );
    connection.messageTokens -= 1;
    connection.byteTokens -= bytes;
    if (connection.messageTokens >= 0 && connection.byteTokens >= 0) return;
    const waitMs = Math.ceil(
      1000 *
        Math.max(
          -connection.messageTokens / limits.messagesPerSecond,
          -connection.byteTokens / limits.bytesPerSecond,
        ),
    );
    if (connection.paused === 'budget') return;
    this.counters.throttled += 1;
    if (now - connection.lastThrottleLogAt > 10_000) {
      connection.lastThrottleLogAt = now;
      log.warn(
        {
          waitMs,
          messagesPerSecond: limits.messagesPerSecond,
          bytesPerSecond: limits.bytesPerSecond,
        },
        'agent throttled: it sends more than its budget',
      );
    }
    this.#pause(connection, 'budget');
    clearTimeout(connection.resumeTimer);
    connection.resumeTimer = setTimeout(() => {
      connection.resumeTimer = undefined;
      if (connection.paused !== 'budget') return;
      this.#resume(connection);
      // Still a backlog for the control plane: keep it paused for that reason instead.
      if (this.#queueFull(connection)) this.#pause(connection, 'queue');
    }, waitMs);
    connection.resumeTimer.unref();
  }

  /** Counts an invalid message; past the limit the connection is closed. */
  #invalid(connection: Connection, size: number, log: FastifyBaseLogger): void {
    this.counters.invalidMessages += 1;
    connection.invalid += 1;
    if (connection.invalid <= 10) log.warn({ size }, 'invalid message from agent ignored');
    if (connection.invalid === this.#limits.maxInvalidMessages + 1) {
      this.counters.closedForPolicy += 1;
      log.warn({ invalid: connection.invalid }, 'agent disconnected: too many invalid messages');
      connection.socket.close(POLICY_VIOLATION, 'too many invalid messages');
    }
  }

  /** The connection's messages, or its VM's bytes, waiting for the control plane are at the cap. */
  #queueFull(connection: Connection): boolean {
    return (
      connection.queued >= this.#limits.maxQueuedMessages ||
      this.backlogBytes(connection.vm.id) >= this.#limits.maxQueuedBytes
    );
  }

  #resumeIfDrained(connection: Connection): void {
    if (
      connection.paused === 'queue' &&
      connection.queued <= this.#limits.maxQueuedMessages / 10 &&
      this.backlogBytes(connection.vm.id) <= this.#limits.maxQueuedBytes / 2
    ) {
      this.#resume(connection);
    }
  }

  #pause(connection: Connection, why: 'budget' | 'queue'): void {
    connection.paused = why;
    connection.socket.pause();
  }

  #resume(connection: Connection): void {
    connection.paused = undefined;
    connection.socket.resume();
  }

  #pingAll(): void {
    for (const connection of this.#connections.values()) {
      // A socket the hub is not reading cannot show its pongs; it is held back, not dead.
      if (connection.paused !== undefined) continue;
      if (!connection.alive) {
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }

  close(): void {
    clearInterval(this.#ping);
    for (const connection of this.#connections.values()) {
      clearTimeout(connection.resumeTimer);
      connection.socket.close(1001, 'server shutting down');
    }
    this.#connections.clear();
    this.files.close();
  }
}
