import { randomUUID } from 'node:crypto';
import type { SessionRecord } from '../store/store.js';
import type { Caller, ControlContext } from './control-context.js';
import { sessionResourceId } from './resource-ids.js';

/** One audit entry, stamped with an id and the control plane's clock. */
export async function appendAudit(
  ctx: ControlContext,
  caller: Caller,
  entry: {
    subscriptionId: string;
    action: string;
    resourceId: string;
    detail: Record<string, unknown>;
  },
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
