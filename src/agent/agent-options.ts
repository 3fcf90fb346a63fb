/**
 * The agent's public face: the options it starts with, what it reports, and the handle
 * `createAgent` (src/agent/agent.ts) returns.
 */
import type { PortRange } from '../capture/filter-spec.js';
import type { AgentMessage, ObservedSession, ServerMessage } from '../model/channel.js';
import type { AgentLog } from './agent-log.js';

export interface AgentOptions {
  /** The server's base URL, http:// or https://. */
  readonly serverUrl: string;
  /** CA certificate(s) to trust for an https server (PEM). */
  readonly ca?: Buffer;
  /** The subscription's enrollment token; needed only while the agent is not enrolled. */
  readonly enrollToken?: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  /** The VM name this host appears as; or, for a scale-set instance, `scaleSet`. */
  readonly name?: string;
  /** The scale set this host enrolls in as an instance (instead of `name`). */
  readonly scaleSet?: string;
  /** With `scaleSet`: the instance id to enroll as; without, the server assigns the next. */
  readonly instanceId?: string;
  readonly location: string;
  /** The interface captures run on. */
  readonly interface: string;
  /** The network namespace the interface lives in. */
  readonly netns?: string;
  /** Holds agent.json and the journal. */
  readonly dataDir: string;
  /** Every capture file lies under it (default /var/captures). */
  readonly captureRoot?: string;
  /** Reported at enrollment and in `hello` (default: os.hostname()). */
  readonly hostname?: string;
  readonly log?: AgentLog;
  /** Reconnect backoff, first and longest wait (default 250 ms and 15 s). */
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** Silence from the server after which the channel is re-dialled (default 45 s). */
  readonly deadAfterMs?: number;
  /** How often a running capture reports progress (default 2000 ms, at most 5000). */
  readonly progressIntervalMs?: number;
  readonly tcpdumpPath?: string;
  /** On close, how long to wait for the server to acknowledge the final states (default 2 s). */
  readonly ackWaitMs?: number;
  /**
   * On close, how long blob uploads may take to complete after the captures have stopped
   * (default 10 s); the rest stay Pending in the journal and resume at the next start.
   */
  readonly uploadWaitMs?: number;
  /** Blob upload retry waits, first and longest (default 500 ms and 10 s). */
  readonly uploadBackoffMinMs?: number;
  readonly uploadBackoffMaxMs?: number;
  /** Aborts enrollment (which retries until it reaches the server). */
  readonly signal?: AbortSignal;
  /** The wall clock blob uploads read their SAS expiry against (default Date.now; tests jump it). */
  readonly now?: () => number;
  /**
   * The local ports every connection of the agent is bound to, so that captures can leave them
   * out (default: 16 ports next to the kernel's ephemeral range; src/agent/own-ports.ts).
   */
  readonly ownPorts?: PortRange;
}

/** How the agent's run ended. */
export type AgentExit =
  | { readonly reason: 'closed' }
  /** The server deregistered the VM: captures stopped (TargetDeleted), agent.json removed. */
  | { readonly reason: 'deregistered' }
  /** The server refused the credential (HTTP 401): same clean-up, and `error` says so. */
  | { readonly reason: 'unauthorized'; readonly error: Error };

export type AgentEvent =
  | { readonly type: 'connected' }
  | { readonly type: 'disconnected' }
  | { readonly type: 'received'; readonly message: ServerMessage }
  | { readonly type: 'sent'; readonly message: AgentMessage }
  | { readonly type: 'exit'; readonly exit: AgentExit };

export interface Agent {
  readonly agentId: string;
  readonly vmId: string;
  readonly captureRoot: string;
  readonly connected: boolean;
  /** Settles when the agent has stopped, for whatever reason; never rejects. */
  readonly exited: Promise<AgentExit>;
  /** Every session in the journal, as `hello` would report it. */
  sessions(): ObservedSession[];
  /** Subscribes to what the agent does; returns the unsubscribe function. */
  onEvent(listener: (event: AgentEvent) => void): () => void;
  /**
   * Stops every running capture (ManualIntervention; each file complete and fsynced, each
   * final state journaled and sent), waits briefly for the server's acks, and disconnects.
   * Safe to call twice.
   */
  close(): Promise<void>;
}
