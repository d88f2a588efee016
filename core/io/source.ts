/**
 * Where checkpoint and adapter files come from. core/ never touches the network or the file system itself:
 * the caller hands in a FileSource (a URL with the page's fetch, files the user picked, or a Node directory
 * from cli/hf-source.ts).
 */

export interface FileSource {
  /** Human-readable origin for messages, e.g. `https://host/models/x/` or `picked files`. */
  readonly describe: string;
  /** Resolves with the file's bytes, or rejects with CheckpointFetchError. */
  read(name: string): Promise<Uint8Array>;
}

export class CheckpointFetchError extends Error {
  static override readonly name = 'CheckpointFetchError';
  override readonly name = CheckpointFetchError.name;
  constructor(
    message: string,
    /** The file that could not be read. */
    readonly fileName: string,
    /** HTTP status when the source is a URL and the server answered. */
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The subset of the WHATWG fetch Response that urlSource uses (core has no DOM typings). */
export interface FetchResponseLike {
  ok: boolean;
  status: number;
  statusText: string;
  headers?: { get(name: string): string | null };
  body?: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;
  arrayBuffer(): Promise<ArrayBuffer>;
}
export type FetchLike = (url: string) => Promise<FetchResponseLike>;

export interface DownloadProgress {
  file: string;
  loadedBytes: number;
  /** From Content-Length; undefined when the server does not say. */
  totalBytes?: number;
}

function joinUrl(base: string, name: string): string {
  return base.endsWith('/') ? base + name : `${base}/${name}`;
}

/** Reads `<baseUrl>/<name>` with the fetch function the caller passes (the page's `fetch`, or a test double). */
export function urlSource(
  baseUrl: string,
  fetchFn: FetchLike,
  options: { onProgress?: (progress: DownloadProgress) => void } = {},
): FileSource {
  return {
    describe: baseUrl,
    async read(name: string): Promise<Uint8Array> {
      const url = joinUrl(baseUrl, name);
      let response: FetchResponseLike;
      try {
        response = await fetchFn(url);
      } catch (error) {
        throw new CheckpointFetchError(`could not fetch ${url}: ${(error as Error)?.message ?? String(error)}`, name, undefined, { cause: error });
      }
      if (!response.ok) {
        throw new CheckpointFetchError(`fetching ${url} failed: HTTP ${response.status} ${response.statusText}`.trimEnd(), name, response.status);
      }
      try {
        const reader = options.onProgress && response.body ? response.body.getReader() : null;
        if (!reader) return new Uint8Array(await response.arrayBuffer());
        const lengthHeader = response.headers?.get('content-length');
        const totalBytes = lengthHeader ? Number(lengthHeader) : undefined;
        const chunks: Uint8Array[] = [];
        let loadedBytes = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (!value) continue;
          chunks.push(value);
          loadedBytes += value.byteLength;
          options.onProgress!({ file: name, loadedBytes, totalBytes });
        }
        const out = new Uint8Array(loadedBytes);
        let at = 0;
        for (const chunk of chunks) {
          out.set(chunk, at);
          at += chunk.byteLength;
        }
        return out;
      } catch (error) {
        throw new CheckpointFetchError(`reading the body of ${url} failed: ${(error as Error)?.message ?? String(error)}`, name, response.status, {
          cause: error,
        });
      }
    },
  };
}

/** Anything with arrayBuffer(), e.g. a browser File or Blob. */
export interface BlobLike {
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** Files the user picked (or bytes already in memory), keyed by file name. */
export function filesSource(files: Map<string, Uint8Array | BlobLike>, describe = 'picked files'): FileSource {
  return {
    describe,
    async read(name: string): Promise<Uint8Array> {
      const file = files.get(name);
      if (file === undefined) {
        const have = [...files.keys()].join(', ') || 'none';
        throw new CheckpointFetchError(`${name} is not among the ${describe} (have: ${have})`, name);
      }
      if (file instanceof Uint8Array) return file;
      try {
        return new Uint8Array(await file.arrayBuffer());
      } catch (error) {
        throw new CheckpointFetchError(`could not read ${name}: ${(error as Error)?.message ?? String(error)}`, name, undefined, { cause: error });
      }
    },
  };
}
