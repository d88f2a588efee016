/**
 * Differential privacy for what a volunteer's own text teaches the swarm: accountant, noise source, mechanism,
 * ledger, manifest config and the measures of leakage. Pure TypeScript; the tfjs parts (private-round.ts,
 * scoring.ts, canary-experiment.ts) are imported by path so that this index pulls no tensor library.
 */
export * from './rdp.ts';
export * from './noise-source.ts';
export * from './mechanism.ts';
export * from './config.ts';
export * from './budget.ts';
export * from './describe.ts';
export * from './exposure.ts';
export * from './peer-privacy.ts';
