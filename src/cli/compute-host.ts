/**
 * What `wirewatch vm` and `wirewatch vmss instance` show of a host with an agent: the
 * Microsoft.Compute resource as the server shapes it (a VM, or a scale-set instance), with the
 * agent's state under `properties.agent`, and the table columns both commands share.
 */
import type { Column } from './output.js';
import { resourceGroupOf } from './resource-scope.js';

export interface ComputeHost {
  readonly id: string;
  readonly name: string;
  readonly location: string;
  readonly properties?: {
    readonly agent?: {
      readonly connectionState?: string;
      readonly lastSeen?: string | null;
      readonly hostname?: string;
    };
  };
}

/** Name, ResourceGroup, Location, Connection, LastSeen, Hostname. */
export const HOST_COLUMNS: readonly Column<ComputeHost>[] = [
  { header: 'Name', get: (vm) => vm.name },
  { header: 'ResourceGroup', get: (vm) => resourceGroupOf(vm.id) },
  { header: 'Location', get: (vm) => vm.location },
  { header: 'Connection', get: (vm) => vm.properties?.agent?.connectionState },
  { header: 'LastSeen', get: (vm) => vm.properties?.agent?.lastSeen, kind: 'time' },
  { header: 'Hostname', get: (vm) => vm.properties?.agent?.hostname },
];
