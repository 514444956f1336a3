import { SluiceError } from '@sluice/core';
import type { RequestTransaction, Statement, StatementResult } from '@sluice/db';

/**
 * A validated, compiled operation: the statements it runs and how to build its response.
 * Building a plan touches no database; running it is the caller's choice — alone (one round
 * trip when `oneShot`) or as a step of a Transaction.
 */
export interface Plan<R> {
  readonly readOnly: boolean;
  /** Sent together, in order, without waiting for one another. */
  readonly statements: readonly Statement[];
  /**
   * True when COMMIT may follow the statements in the same round trip: `finish` then neither
   * runs more statements nor rejects a result that would have to be rolled back.
   */
  readonly oneShot: boolean;
  finish(results: readonly StatementResult[], tx: RequestTransaction | undefined): Promise<R> | R;
  /**
   * Adds the request field to an error the database raised about a value only it can check
   * (an unknown text search configuration), which the error itself cannot name.
   */
  readonly explain?: (error: SluiceError) => SluiceError;
}

/** `error` as the plan explains it (see Plan.explain); anything else passes unchanged. */
export function explainError(plan: Pick<Plan<unknown>, 'explain'>, error: unknown): unknown {
  return plan.explain && error instanceof SluiceError ? plan.explain(error) : error;
}
