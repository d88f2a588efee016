export * from './types.ts';
export * from './errors.ts';
export { getStrategy, listStrategies, mergeWith, outputKind, resolveParams } from './registry.ts';
export { PeerUpdateHistory } from './strategies/similarity.ts';
