import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AuditEntry, Caller, ControlPlane } from '../control/control-plane.js';
import { DEFAULT_NETWORK_API_VERSION } from '../control/api-versions.js';
import type { AgentHub } from './agent-hub.js';
import { actorOf, type Authenticator, type Principal } from './auth.js';
import type { RequestLimits } from './request-limits.js';
import type { WebSocketGate } from './websocket-gate.js';

/** What every route plugin gets: the control plane, the agent hub, authentication and limits. */
export interface ServerContext {
  readonly control: ControlPlane;
  readonly hub: AgentHub;
  readonly auth: Authenticator;
  /** WebSocket upgrades and the open sockets, by token and VM. */
  readonly sockets: WebSocketGate;
  /** Rate limits per token, and per address for failed logins and for agents. */
  readonly limits: RequestLimits;
  /** Largest page of an ARM list asked for with $top; also the store's batch for full lists. */
  readonly pageSize: number;
  /** The most VMs one subscription may enroll (`--max-vms-per-subscription`). */
  readonly maxVmsPerSubscription: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export function principalOf(request: FastifyRequest): Principal {
  // The onRequest hook authenticates every route that reaches a handler needing this.
  return request.principal!;
}

export function callerOf(request: FastifyRequest): Caller {
  return { actor: actorOf(principalOf(request)), sourceIp: request.ip };
}

/** The api-version the request came with (checked by the onRequest hook), for polling URLs. */
export function apiVersionOf(request: FastifyRequest): string {
  const raw = (request.query as Record<string, unknown>)['api-version'];
  const first = Array.isArray(raw) ? (raw[0] as unknown) : raw;
  return typeof first === 'string' ? first : DEFAULT_NETWORK_API_VERSION;
}

/** Appends an audit record of this request's caller (who, from where, now). */
export async function auditRequest(
  control: ControlPlane,
  request: FastifyRequest,
  entry: Omit<AuditEntry, 'detail'> & { readonly detail?: Record<string, unknown> },
): Promise<void> {
  await control.audit(callerOf(request), { ...entry, detail: entry.detail ?? {} });
}

/**
 * An absolute URL on this server (Azure's polling URLs are absolute), on its configured public
 * URL: never the request's Host header, which the client that follows the URL did not choose.
 */
export function absoluteUrl(request: FastifyRequest, path: string): string {
  return `${request.server.publicUrl}${path}`;
}

/** Azure's async-operation headers for an operation in a location. */
export function setOperationHeaders(
  request: FastifyRequest,
  reply: FastifyReply,
  op: { subscriptionId: string; location: string; id: string },
  header: 'Azure-AsyncOperation' | 'Location' | 'both',
): void {
  const version = encodeURIComponent(apiVersionOf(request));
  const base = `/subscriptions/${op.subscriptionId}/providers/Microsoft.Network/locations/${op.location}`;
  if (header === 'Azure-AsyncOperation' || header === 'both') {
    reply.header(
      'Azure-AsyncOperation',
      absoluteUrl(request, `${base}/operations/${op.id}?api-version=${version}`),
    );
  }
  if (header === 'Location' || header === 'both') {
    reply.header(
      'Location',
      absoluteUrl(request, `${base}/operationResults/${op.id}?api-version=${version}`),
    );
  }
  reply.header('Retry-After', '1');
}
