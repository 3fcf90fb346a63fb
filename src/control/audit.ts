import { randomUUID } from 'node:crypto';
import type { SessionRecord } from '../store/store.js';
import type { Caller, ControlContext } from './control-context.js';
import { sessionResourceId } from './resource-ids.js';

/** What an audit entry says; who and from where come from the Caller. */
export interface AuditEntry {
  readonly subscriptionId: string;
  readonly action: string;
  readonly resourceId: string;
  readonly detail: Record<string, unknown>;
}

/** One audit entry, stamped with an id and the control plane's clock. */
export async function appendAudit(
  ctx: ControlContext,
  caller: Caller,
  entry: AuditEntry,
): Promise<void> {
  await ctx.store.appendAudit({
    id: randomUUID(),
    subscriptionId: entry.subscriptionId,
    at: ctx.now(),
    actor: caller.actor,
    action: entry.action,
    resourceId: entry.resourceId,
    sourceIp: caller.sourceIp,
    detail: entry.detail,
  });
}

/** An audit entry about a packet capture. */
export async function auditCapture(
  ctx: ControlContext,
  caller: Caller,
  action: string,
  session: SessionRecord,
  detail: Record<string, unknown>,
): Promise<void> {
  await appendAudit(ctx, caller, {
    subscriptionId: session.subscriptionId,
    action,
    resourceId: sessionResourceId(session),
    detail,
  });
}
