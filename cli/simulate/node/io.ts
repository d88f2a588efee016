// What a node-simulator shard reads from disk: the base model folder and the prepared Brown corpus.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadHfCheckpoint } from '../../../core/io/hf-checkpoint.ts';
import type { LoadedBase } from '../../../core/swarm/peer-engine.ts';
import { directorySource } from '../../hf-source.ts';

/** Every peer of a shard shares one loaded base model (read-only), as tabs of one origin share the HTTP cache. */
export const NODE_SHARD_IO = {
  async loadBase(dir: string): Promise<LoadedBase> {
    const loaded = await loadHfCheckpoint(directorySource(dir), { sha256: true });
    return { config: loaded.config, weights: loaded.weights, sha256: loaded.weightsSha256! };
  },
  readCorpus: (dir: string, path: string) => readFile(join(dir, path), 'utf8'),
};
