import { randomUUID } from 'node:crypto';
import type { SubscriptionRecord } from '../store/store.js';
import { appendAudit } from './audit.js';
import type { Caller, ControlContext } from './control-context.js';

/** Subscriptions (tenants): created by the admin, audited in their own log. */
export class Subscriptions {
  readonly #ctx: ControlContext;

  constructor(ctx: ControlContext) {
    this.#ctx = ctx;
  }

  /** A new subscription (its id a new uuid, created now on the wall clock), audited. */
  async create(displayName: string, caller: Caller): Promise<SubscriptionRecord> {
    const record: SubscriptionRecord = { id: randomUUID(), displayName, createdAt: new Date() };
    await this.#ctx.store.createSubscription(record);
    await appendAudit(this.#ctx, caller, {
      subscriptionId: record.id,
      action: 'subscription.create',
      resourceId: `/subscriptions/${record.id}`,
      detail: { displayName },
    });
    return record;
  }

  get(id: string): Promise<SubscriptionRecord | undefined> {
    return this.#ctx.store.getSubscription(id);
  }

  list(): Promise<SubscriptionRecord[]> {
    return this.#ctx.store.listSubscriptions();
  }
}
