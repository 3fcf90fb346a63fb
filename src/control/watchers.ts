import { randomUUID } from 'node:crypto';
import { WirewatchError } from '../model/errors.js';
import type { NetworkWatcherRecord, OperationRecord, Upserted } from '../store/store.js';
import { appendAudit } from './audit.js';
import type { Caller, ControlContext } from './control-context.js';
import type { CaptureOperations } from './operations.js';
import { watcherResourceId } from './resource-ids.js';
import { finishSession, isActive, toRequestReason, type SessionMemory } from './session-end.js';

/** A network watcher as a PUT names it, its names and location already parsed. */
export interface WatcherPut {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly name: string;
  readonly location: string;
  readonly tags: Record<string, string> | undefined;
}

/** Network watchers: at most one per subscription and location; deleting one ends its captures. */
export class NetworkWatchers {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;
  readonly #operations: CaptureOperations;

  constructor(ctx: ControlContext, memory: SessionMemory, operations: CaptureOperations) {
    this.#ctx = ctx;
    this.#memory = memory;
    this.#operations = operations;
  }

  /** The watcher a capture's path names; ParentResourceNotFound when there is none. */
  require(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
  ): Promise<NetworkWatcherRecord> {
    return this.#find(subscriptionId, resourceGroup, watcherName, 'ParentResourceNotFound');
  }

  /** GET: the watcher; ResourceNotFound when there is none. */
  get(subscriptionId: string, resourceGroup: string, name: string): Promise<NetworkWatcherRecord> {
    return this.#find(subscriptionId, resourceGroup, name, 'ResourceNotFound');
  }

  async #find(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
    missing: 'ParentResourceNotFound' | 'ResourceNotFound',
  ): Promise<NetworkWatcherRecord> {
    const watcher = await this.#ctx.store.getWatcher(subscriptionId, resourceGroup, name);
    if (!watcher) {
      throw new WirewatchError(
        missing,
        `Network watcher '${name}' was not found in resource group '${resourceGroup}'`,
        { target: 'networkWatcherName' },
      );
    }
    return watcher;
  }

  /** The subscription's watchers, or one resource group's, by resource group and name. */
  list(subscriptionId: string, resourceGroup?: string): Promise<NetworkWatcherRecord[]> {
    return this.#ctx.store.listWatchers(subscriptionId, resourceGroup);
  }

  /** PUT: creates the watcher (201), or updates its tags (200); its location cannot change. */
  async put(input: WatcherPut): Promise<Upserted<NetworkWatcherRecord>> {
    const { store } = this.#ctx;
    const { subscriptionId, resourceGroup, name, location } = input;
    const existing = await store.getWatcher(subscriptionId, resourceGroup, name);
    if (existing && existing.location !== location) {
      throw new WirewatchError(
        'InvalidLocation',
        `location: network watcher '${existing.name}' is in '${existing.location}'; a resource's location cannot change`,
        { target: 'location' },
      );
    }
    const other = await store.findWatcherByLocation(subscriptionId, location);
    if (!existing && other) {
      throw new WirewatchError(
        'NetworkWatcherCountLimitReached',
        `Subscription '${subscriptionId}' already has network watcher '${other.name}' (resource group '${other.resourceGroup}') in location '${location}'; there is at most one per location`,
        { target: 'location' },
      );
    }
    return store.putWatcher({
      subscriptionId,
      resourceGroup,
      name,
      location,
      tags: input.tags ?? existing?.tags ?? {},
      etag: randomUUID(),
      createdAt: this.#ctx.now(), // an update keeps the stored one
    });
  }

  /**
   * DELETE: its captures go with it. Running ones are ended here (ManualIntervention) and their
   * agents told to stop; the delete is audited. Undefined when there was no such watcher.
   */
  async delete(
    subscriptionId: string,
    resourceGroup: string,
    name: string,
    caller: Caller,
  ): Promise<OperationRecord | undefined> {
    const { store, agents } = this.#ctx;
    const w = await store.getWatcher(subscriptionId, resourceGroup, name);
    if (!w) return undefined;
    let stopped = 0;
    let page = await store.listSessions(subscriptionId, w.resourceGroup, w.name, { limit: 1000 });
    for (;;) {
      for (const s of page.items) {
        if (!isActive(s.status)) continue;
        // A scale-set capture's instances run as child sessions (never listed): each is ended.
        const children = await store.listChildSessions(s.id);
        const stopReason = 'ManualIntervention';
        for (const one of [s, ...children.filter((c) => isActive(c.status))]) {
          await finishSession(this.#ctx, this.#memory, one, { status: 'Stopped', stopReason });
          agents.send(one.vmId, {
            type: 'stop',
            sessionId: one.id,
            reason: toRequestReason(stopReason),
          });
        }
        stopped += 1;
      }
      if (!page.next) break;
      page = await store.listSessions(subscriptionId, w.resourceGroup, w.name, {
        limit: 1000,
        after: page.next,
      });
    }
    await store.deleteWatcher(subscriptionId, w.resourceGroup, w.name);
    const resourceId = watcherResourceId(subscriptionId, w.resourceGroup, w.name);
    await appendAudit(this.#ctx, caller, {
      subscriptionId,
      action: 'networkWatcher.delete',
      resourceId,
      detail: { location: w.location, stoppedCaptures: stopped },
    });
    return this.#operations.completed('delete', subscriptionId, w.location, resourceId);
  }

  /**
   * Creates `NetworkWatcher_{location}` in `NetworkWatcherRG` when the subscription has no
   * watcher in the location and none of that name (an operator may have put it elsewhere).
   * An existing watcher is never changed: its location, tags and etag are its owner's.
   */
  async ensureFor(subscriptionId: string, location: string): Promise<void> {
    const { store } = this.#ctx;
    if (await store.findWatcherByLocation(subscriptionId, location)) return;
    await store.createWatcherIfAbsent({
      subscriptionId,
      resourceGroup: 'NetworkWatcherRG',
      name: `NetworkWatcher_${location}`,
      location,
      tags: {},
      etag: randomUUID(),
      createdAt: this.#ctx.now(),
    });
  }
}
