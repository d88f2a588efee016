/** core/swarm: the transport-agnostic peer logic shared by the worker, the page and the simulator. */
export * from './staleness.ts';
export * from './compatibility.ts';
export * from './neighbours.ts';
export * from './cadence.ts';
export * from './run.ts';
export * from './telemetry.ts';
export * from './guard.ts';
