/**
 * Why a capture ends: the one stop-reason type of the API, the channel, the store and the
 * capture runner (which produces a subset of it).
 */
import { Type, type Static } from 'typebox';

/** Why a capture ended, as the API reports it (docs/errors.md "Stop reasons"). */
export const StopReasonSchema = Type.Union([
  Type.Literal('TimeExceeded'),
  Type.Literal('SessionBytesExceeded'),
  Type.Literal('ManualIntervention'),
  Type.Literal('AgentRestarted'),
  Type.Literal('TargetDeleted'),
  Type.Literal('Error'),
]);
export type SessionStopReason = Static<typeof StopReasonSchema>;

/** Why the server asks an agent to stop a session. */
export const StopRequestReasonSchema = Type.Union([
  Type.Literal('ManualIntervention'),
  Type.Literal('TargetDeleted'),
  Type.Literal('TimeExceeded'),
]);
export type StopRequestReason = Static<typeof StopRequestReasonSchema>;
