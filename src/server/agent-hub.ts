import type { FastifyBaseLogger } from 'fastify';
import type { WebSocket } from 'ws';
import type { AgentLink, ControlPlane } from '../control/control-plane.js';
import {
  CHANNEL_PROTOCOL_VERSION,
  parseAgentMessage,
  type ServerMessage,
} from '../model/channel.js';
import type { VmRecord } from '../store/store.js';
import { FileRelay } from './file-relay.js';

interface Connection {
  readonly vm: VmRecord;
  readonly socket: WebSocket;
  /** Messages of one agent are handled one after another, in order. */
  queue: Promise<void>;
  alive: boolean;
}

export interface AgentHubOptions {
  readonly pingIntervalMs?: number;
  readonly log: FastifyBaseLogger;
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
  readonly #log: FastifyBaseLogger;
  readonly #ping: NodeJS.Timeout;
  #control: ControlPlane | undefined;

  constructor(options: AgentHubOptions) {
    this.#log = options.log;
    // A peer that answers no ping for two rounds is gone (NAT timeouts, pulled cables).
    this.#ping = setInterval(() => this.#pingAll(), options.pingIntervalMs ?? 15_000);
    this.#ping.unref();
  }

  bind(control: ControlPlane): void {
    this.#control = control;
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
    const connection: Connection = { vm, socket, queue: Promise.resolve(), alive: true };
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
      if (isBinary) {
        this.files.data(vm.id, bytes);
        return;
      }
      const text = bytes.toString('utf8');
      const message = parseAgentMessage(text);
      if (!message) {
        log.warn({ size: text.length }, 'invalid message from agent ignored');
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
        });
    });
    socket.on('close', () => {
      if (this.#connections.get(vm.id) === connection) {
        this.#connections.delete(vm.id);
        this.files.disconnected(vm.id);
        log.info('agent disconnected');
        void this.#control?.store.touchVm(vm.id, new Date()).catch(() => undefined);
      }
    });
    socket.on('error', (err) => log.warn({ err }, 'agent socket error'));
  }

  /** Waits for every queued agent message to be handled (for orderly shutdown and tests). */
  async drain(): Promise<void> {
    await Promise.all([...this.#connections.values()].map((c) => c.queue));
  }

  #pingAll(): void {
    for (const connection of this.#connections.values()) {
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
      connection.socket.close(1001, 'server shutting down');
    }
    this.#connections.clear();
    this.files.close();
  }
}
