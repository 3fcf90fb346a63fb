import { instanceVmName, compareInstanceIds } from '../model/scale-set.js';
import { parseResourceId } from '../model/resource-id.js';
import type { SessionRecord } from '../store/store.js';
import type { ControlContext } from './control-context.js';
import type { SessionMemory } from './session-end.js';

/** One instance of a scale-set capture: its id, its VM name (`{ss}_{id}`) and its child session. */
export interface InstanceSession {
  readonly instanceId: string;
  readonly vmName: string;
  /** The child session, with the live progress held for it. */
  readonly session: SessionRecord;
}

/**
 * Captures on scale sets (issue 11): a parent session (the ARM resource) and one child session
 * per selected instance, an ordinary session of that instance's VM that the agents' side runs
 * unchanged.
 */
export class ScaleSetCaptures {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;

  constructor(ctx: ControlContext, memory: SessionMemory) {
    this.#ctx = ctx;
    this.#memory = memory;
  }

  /**
   * A scale-set capture's instances, by instance id as a number; empty for any other capture.
   */
  async instanceSessions(parent: SessionRecord): Promise<InstanceSession[]> {
    if (parent.parentId !== null) return [];
    const scaleSet =
      parseResourceId(parent.properties.target, 'Microsoft.Compute/virtualMachineScaleSets')
        ?.name ?? '';
    const children = await this.#ctx.store.listChildSessions(parent.id);
    return children
      .flatMap((child) =>
        child.instanceId === null
          ? []
          : [
              {
                instanceId: child.instanceId,
                vmName: instanceVmName(scaleSet, child.instanceId),
                session: this.#memory.progress.withLive(child),
              },
            ],
      )
      .sort((a, b) => compareInstanceIds(a.instanceId, b.instanceId));
  }
}
