/**
 * The api-versions wirewatch answers: the published stable Microsoft.Network versions from
 * 2021-08-01 to 2026-01-01 (networkWatchers and packetCaptures have the same shape in all of
 * them), and the Microsoft.Compute versions of the same period for the VM routes.
 */
export const networkApiVersions: ReadonlySet<string> = new Set([
  '2021-08-01',
  '2022-01-01',
  '2022-05-01',
  '2022-07-01',
  '2022-09-01',
  '2022-11-01',
  '2023-02-01',
  '2023-04-01',
  '2023-05-01',
  '2023-06-01',
  '2023-09-01',
  '2023-11-01',
  '2024-01-01',
  '2024-03-01',
  '2024-05-01',
  '2024-07-01',
  '2024-10-01',
  '2025-01-01',
  '2025-03-01',
  '2025-05-01',
  '2025-07-01',
  '2025-09-01',
  '2026-01-01',
]);

export const computeApiVersions: ReadonlySet<string> = new Set([
  '2021-11-01',
  '2022-03-01',
  '2022-08-01',
  '2022-11-01',
  '2023-03-01',
  '2023-07-01',
  '2023-09-01',
  '2024-03-01',
  '2024-07-01',
  '2024-11-01',
  '2025-04-01',
  '2025-11-01',
]);

/** Microsoft.Storage's published versions of the same period, for the storage account routes. */
export const storageApiVersions: ReadonlySet<string> = new Set([
  '2021-08-01',
  '2021-09-01',
  '2022-05-01',
  '2022-09-01',
  '2023-01-01',
  '2023-04-01',
  '2023-05-01',
  '2024-01-01',
  '2025-01-01',
  '2025-06-01',
]);

/** The version the server writes into the polling URLs it hands out when none was given. */
export const DEFAULT_NETWORK_API_VERSION = '2025-09-01';
