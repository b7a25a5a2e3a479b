/** Which budget a run has: `small` (the default, `pnpm test`, CI) or `large` (`pnpm torture`). */
export type BudgetName = 'small' | 'large';

/** The run's budget, read once from `IDEM_TORTURE_BUDGET` (`large`; anything else or unset is `small`). */
export interface Budget {
  readonly name: BudgetName;
  /** `true` under `IDEM_TORTURE_BUDGET=large`. */
  readonly large: boolean;
  /** Pick the figure of this budget: `budget.scale(50, 5_000)` requests, runs, iterations, ... */
  scale<T>(small: T, large: T): T;
}

const name: BudgetName = process.env['IDEM_TORTURE_BUDGET'] === 'large' ? 'large' : 'small';

/** The torture budget of this run: small enough for CI by default, large with `pnpm torture`. */
export const budget: Budget = {
  name,
  large: name === 'large',
  scale: (small, large) => (name === 'large' ? large : small),
};
