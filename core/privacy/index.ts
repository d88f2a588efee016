/** Differential privacy for what a volunteer's own text teaches the swarm: accountant, mechanism, ledger, config. */
export * from './rdp.ts';
export * from './noise-source.ts';
export * from './mechanism.ts';
export * from './config.ts';
export * from './budget.ts';
export * from './describe.ts';
