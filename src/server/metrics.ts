import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ControlPlane } from '../control/control-plane.js';
import type { SessionStatus } from '../store/store.js';
import type { AgentHub } from './agent-hub.js';

/** The server's Prometheus metrics, in a registry of its own (one per server instance). */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly agentMessages: Counter<'type'>;

  constructor(control: ControlPlane, hub: AgentHub) {
    this.requestDuration = new Histogram({
      name: 'wirewatch_http_request_duration_seconds',
      help: 'API latency by method, route and status',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.agentMessages = new Counter({
      name: 'wirewatch_agent_messages_total',
      help: 'Messages received from agents, by type',
      labelNames: ['type'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'wirewatch_agents_connected',
      help: 'Agents holding a channel to this server',
      registers: [this.registry],
      collect() {
        this.set(hub.connectedCount);
      },
    });
    const counted: Record<string, number> = {};
    new Counter({
      name: 'wirewatch_agent_channel_limits_total',
      help: 'Agents held back on their channel, by reason: throttled (over budget), queueFull (control plane behind), invalidMessage, closedForPolicy',
      labelNames: ['reason'],
      registers: [this.registry],
      collect() {
        const now: Record<string, number> = {
          throttled: hub.counters.throttled,
          queueFull: hub.counters.queueFull,
          invalidMessage: hub.counters.invalidMessages,
          closedForPolicy: hub.counters.closedForPolicy,
        };
        for (const [reason, n] of Object.entries(now)) {
          const delta = n - (counted[reason] ?? 0);
          this.inc({ reason }, delta);
          counted[reason] = n;
        }
      },
    });
    new Gauge({
      name: 'wirewatch_sessions',
      help: 'Packet capture sessions by status',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        const counts = await control.countCapturesByStatus();
        for (const [status, n] of Object.entries(counts) as [SessionStatus, number][]) {
          this.set({ status }, n);
        }
      },
    });
  }
}
