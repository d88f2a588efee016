// The worker's storage for checkpoints and local text: one IndexedDB object store of byte strings.
import { StorageFullError, type KeyValueStore } from '../../core/swarm/peer-checkpoint.ts';

/** IndexedDB store (one object store of byte strings). A quota error becomes StorageFullError. */
export function indexedDbStore(dbName = 'swarm-peer'): KeyValueStore {
  const open = (): Promise<IDBDatabase> =>
    new Promise((resolve, reject) => {
      const req = indexedDB.open(dbName, 1);
      req.onupgradeneeded = () => req.result.createObjectStore('kv');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  let db: Promise<IDBDatabase> | undefined;
  const tx = async <T>(mode: IDBTransactionMode, body: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> => {
    db ??= open();
    const database = await db;
    return new Promise<T>((resolve, reject) => {
      const transaction = database.transaction('kv', mode);
      const req = body(transaction.objectStore('kv'));
      let result: T;
      req.onsuccess = () => (result = req.result);
      transaction.oncomplete = () => resolve(result);
      const fail = () => {
        const error = transaction.error ?? req.error;
        if (error?.name === 'QuotaExceededError') reject(new StorageFullError(`browser storage is full: ${error.message}`));
        else reject(error ?? new Error('IndexedDB transaction failed'));
      };
      transaction.onerror = fail;
      transaction.onabort = fail;
    });
  };
  return {
    async get(key) {
      const value = await tx<unknown>('readonly', (s) => s.get(key));
      return value instanceof Uint8Array ? value : value instanceof ArrayBuffer ? new Uint8Array(value) : undefined;
    },
    async put(key, value) {
      await tx('readwrite', (s) => s.put(value, key));
    },
    async delete(key) {
      await tx('readwrite', (s) => s.delete(key));
    },
  };
}
