/**
 * Node-side file access for core/io: a FileSource over a local directory, and writing a checkpoint's or adapter's
 * files into one. Kept out of core/ because it uses node:fs.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CheckpointFetchError, type FileSource } from '../core/io/source.ts';

export function directorySource(directory: string): FileSource {
  const root = resolve(directory);
  return {
    describe: root,
    async read(name: string): Promise<Uint8Array> {
      const path = join(root, name);
      try {
        const buffer = await readFile(path);
        return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'no such file' : (error as Error).message;
        throw new CheckpointFetchError(`could not read ${path}: ${why}`, name, undefined, { cause: error });
      }
    },
  };
}

/** Writes each named file (e.g. the result of saveHfCheckpoint or exportPeft) into the directory, creating it. */
export async function writeFilesTo(directory: string, files: Record<string, Uint8Array>): Promise<string[]> {
  await mkdir(directory, { recursive: true });
  const written: string[] = [];
  for (const [name, bytes] of Object.entries(files)) {
    const path = join(directory, name);
    await writeFile(path, bytes);
    written.push(path);
  }
  return written;
}
