export type * from './filter-spec.js';
export { parseFilter, parseFilters, filterLimits } from './filter.js';
export { compileBpf, BPF_MATCH_NOTHING } from './bpf.js';
export { matchesFilters } from './match.js';
export {
  captureLimitBounds,
  resolveCaptureLimits,
  resolveLimit,
  resolveRingSettings,
  type CaptureLimits,
  type RingSettings,
} from '../model/capture-limits.js';
export { checkCapturePath, prepareCapturePath, DEFAULT_CAPTURE_ROOT } from './capture-path.js';
export { interfaceAddresses } from './interface-addresses.js';
export {
  startCapture,
  CaptureSession,
  type CaptureOptions,
  type CaptureProgress,
  type CaptureResult,
  type StopReason,
} from './runner.js';
