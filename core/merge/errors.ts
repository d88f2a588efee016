/** Named errors of core/merge: every bad input a user or peer can cause ends in one of these. */

export class UnknownStrategyError extends Error {
  static override readonly name = 'UnknownStrategyError';
  override readonly name = UnknownStrategyError.name;
}

/** A parameter that the strategy does not declare, or a value of the wrong type, out of range or not a choice. */
export class MergeParamError extends Error {
  static override readonly name = 'MergeParamError';
  override readonly name = MergeParamError.name;
}

/** Inputs whose adapter schema hashes differ (different base model, rank, alpha, targets or shapes). */
export class SchemaMismatchError extends Error {
  static override readonly name = 'SchemaMismatchError';
  override readonly name = SchemaMismatchError.name;
}

/** No inputs, bad weights (NaN, negative, zero sum), non-finite tensors or malformed shapes. */
export class MergeInputError extends Error {
  static override readonly name = 'MergeInputError';
  override readonly name = MergeInputError.name;
}
