// The Node peer's storage for checkpoints and local text: one file per key in a folder. A write goes to a temporary
// file that is flushed and then renamed over the old one, so a crash or Ctrl-C mid-write leaves either the old
// value or the new one, never a torn file (the engine also alternates two checkpoint slots).
import { mkdir, open, readFile, rename, rm, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StorageFullError, type KeyValueStore } from '../core/swarm/peer-checkpoint.ts';

const TEMP_SUFFIX = '.partial';

/** Keys hold '/' and other characters a file name must not; this maps each key to one flat, reversible name. */
export function keyToFileName(key: string): string {
  return `${encodeURIComponent(key).replace(/\./g, '%2E')}.bin`;
}

export function fileNameToKey(name: string): string | null {
  if (!name.endsWith('.bin')) return null;
  try {
    return decodeURIComponent(name.slice(0, -4));
  } catch {
    return null;
  }
}

/** Writes bytes to path through a flushed temporary file and a rename: readers see the old file or the new one. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const temp = `${path}.${process.pid}.${++atomicWrites}${TEMP_SUFFIX}`;
  try {
    const file = await open(temp, 'w', 0o600);
    try {
      await file.writeFile(bytes);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
let atomicWrites = 0;

export interface FileStore extends KeyValueStore {
  readonly directory: string;
  keys(): Promise<string[]>;
}

export function fileStore(directory: string): FileStore {
  const root = resolve(directory);
  let ready: Promise<unknown> | undefined;
  const ensureDir = () => (ready ??= mkdir(root, { recursive: true }));
  return {
    directory: root,
    async get(key) {
      try {
        const buffer = await readFile(join(root, keyToFileName(key)));
        return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    async put(key, value) {
      await ensureDir();
      try {
        await writeFileAtomic(join(root, keyToFileName(key)), value);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOSPC' || code === 'EDQUOT') throw new StorageFullError(`the disk holding ${root} is full: ${(error as Error).message}`);
        throw error;
      }
    },
    async delete(key) {
      await rm(join(root, keyToFileName(key)), { force: true });
    },
    async keys() {
      let names: string[];
      try {
        names = await readdir(root);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw error;
      }
      return names.map(fileNameToKey).filter((k): k is string => k !== null).sort();
    },
  };
}
