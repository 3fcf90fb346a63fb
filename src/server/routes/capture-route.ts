import type { FastifyRequest } from 'fastify';
import type { CaptureRef } from '../../control/control-plane.js';
import { checkResourceGroupName, checkResourceName } from '../../control/resource-ids.js';
import { authorize } from '../auth.js';
import { principalOf, type ServerContext } from '../context.js';

/** A packet capture's ARM path, as a route pattern; its actions append to it. */
export const CAPTURE_ROUTE =
  '/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/providers/Microsoft.Network/networkWatchers/:networkWatcherName/packetCaptures/:packetCaptureName';

export interface CaptureParams {
  subscriptionId: string;
  resourceGroupName: string;
  networkWatcherName: string;
  packetCaptureName: string;
}

/** The capture a route's path names, names checked. */
export function captureRefOf(params: CaptureParams): CaptureRef {
  return {
    subscriptionId: params.subscriptionId.toLowerCase(),
    resourceGroup: checkResourceGroupName(params.resourceGroupName),
    watcherName: params.networkWatcherName,
    name: checkResourceName(params.packetCaptureName, 'packetCaptureName'),
  };
}

/**
 * Authorizes the caller for the capture's subscription with at least `need`, and checks the
 * network watcher exists; returns the capture's reference.
 */
export async function authorizeCapture(
  ctx: Pick<ServerContext, 'control'>,
  request: FastifyRequest,
  params: CaptureParams,
  need: 'Reader' | 'Contributor',
): Promise<CaptureRef> {
  await authorize(ctx.control, principalOf(request), params.subscriptionId, need);
  const ref = captureRefOf(params);
  await ctx.control.requireWatcher(ref.subscriptionId, ref.resourceGroup, ref.watcherName);
  return ref;
}
