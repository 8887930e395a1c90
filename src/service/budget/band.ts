/**
 * The budget band: a hard ceiling and a floor that tolerance may lower.
 * The ceiling is never relaxed.
 */

/** GPU bounds; a negative value switches that bound off. */
export interface BudgetBounds {
  readonly max: number;
  readonly min: number;
}

/** Arbitration is active when either bound is on. */
export function budgetEnabled(bounds: BudgetBounds): boolean {
  return bounds.max >= 0 || bounds.min >= 0;
}

/** `in_band(total, tol)` without building a message (used in the packing loop). */
export function inBand(total: number, tolerance: number, bounds: BudgetBounds): boolean {
  if (bounds.max >= 0 && total > bounds.max) return false;
  if (bounds.min >= 0 && total < bounds.min - tolerance) return false;
  return true;
}

/** Why `total` is out of band, in the upstream wording, or `null` when it is in band. */
export function bandBreach(total: number, tolerance: number, bounds: BudgetBounds): string | null {
  if (bounds.max >= 0 && total > bounds.max) return `total ${total} exceeds ceiling (${bounds.max})`;
  if (bounds.min >= 0 && total < bounds.min - tolerance) {
    return tolerance > 0
      ? `total ${total} below floor (${bounds.min} - tol ${tolerance})`
      : `total ${total} below floor (${bounds.min})`;
  }
  return null;
}

/** The `rejected` message. */
export function budgetBreachMessage(reason: string): string {
  return `GPU budget breach: ${reason}; no feasible pair packing`;
}
