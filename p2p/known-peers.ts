// What a tab remembers between visits: the relays it reached and the peers it had direct links with, so that its
// next visit tries them first (a relay missing from a stale run link, a neighbour still online).
export const KNOWN_PEERS_STORAGE_KEY = 'swarm.known-peers';
const MAX_RELAYS = 8;
const MAX_PEERS = 16;
/** Older entries are more likely dead than useful. */
export const KNOWN_PEER_MAX_AGE_MS = 7 * 24 * 3600_000;

interface Entry {
  addrs: string[];
  lastSeen: number;
}

interface Stored {
  relays: Record<string, Entry>;
  peers: Record<string, Entry>;
}

export class KnownPeers {
  private data: Stored = { relays: {}, peers: {} };

  constructor(
    private readonly storage: Pick<Storage, 'getItem' | 'setItem'> | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.data = this.read();
  }

  /** Relay addresses that worked, most recent first. */
  relays(): string[] {
    return this.sorted(this.data.relays).flatMap((e) => e.addrs);
  }

  /** Peers with the addresses they had, most recent first. */
  peers(): Array<{ peerId: string; addrs: string[] }> {
    return Object.entries(this.data.peers)
      .sort((a, b) => b[1].lastSeen - a[1].lastSeen)
      .map(([peerId, e]) => ({ peerId, addrs: e.addrs }));
  }

  /** The configured list with remembered relays first; configured ones the tab never reached keep their order. */
  orderRelays(configured: string[]): string[] {
    const remembered = this.relays();
    return [...new Set([...remembered, ...configured])];
  }

  rememberRelay(peerId: string, addr: string): void {
    this.data.relays[peerId] = { addrs: [addr], lastSeen: this.now() };
    this.write();
  }

  rememberPeer(peerId: string, addrs: string[]): void {
    if (addrs.length === 0) return;
    this.data.peers[peerId] = { addrs: addrs.slice(0, 4), lastSeen: this.now() };
    this.write();
  }

  private sorted(map: Record<string, Entry>): Entry[] {
    return Object.values(map).sort((a, b) => b.lastSeen - a.lastSeen);
  }

  private prune(map: Record<string, Entry>, max: number): Record<string, Entry> {
    const cutoff = this.now() - KNOWN_PEER_MAX_AGE_MS;
    const kept = Object.entries(map)
      .filter(([, e]) => e.lastSeen >= cutoff)
      .sort((a, b) => b[1].lastSeen - a[1].lastSeen)
      .slice(0, max);
    return Object.fromEntries(kept);
  }

  // Storage is user-writable and shared with older versions of the page: anything malformed is dropped, not trusted.
  private read(): Stored {
    let value: unknown;
    try {
      value = JSON.parse(this.storage?.getItem(KNOWN_PEERS_STORAGE_KEY) ?? 'null');
    } catch {
      return { relays: {}, peers: {} };
    }
    const section = (v: unknown): Record<string, Entry> => {
      const out: Record<string, Entry> = {};
      if (!v || typeof v !== 'object') return out;
      for (const [id, e] of Object.entries(v as Record<string, unknown>)) {
        const entry = e as Partial<Entry> | null;
        if (!entry || !Array.isArray(entry.addrs) || typeof entry.lastSeen !== 'number') continue;
        const addrs = entry.addrs.filter((a): a is string => typeof a === 'string' && a.startsWith('/') && a.length < 512);
        if (addrs.length) out[id] = { addrs, lastSeen: entry.lastSeen };
      }
      return out;
    };
    const v = (value ?? {}) as Record<string, unknown>;
    return { relays: this.prune(section(v.relays), MAX_RELAYS), peers: this.prune(section(v.peers), MAX_PEERS) };
  }

  private write(): void {
    this.data = { relays: this.prune(this.data.relays, MAX_RELAYS), peers: this.prune(this.data.peers, MAX_PEERS) };
    try {
      this.storage?.setItem(KNOWN_PEERS_STORAGE_KEY, JSON.stringify(this.data));
    } catch {
      // A full or disabled storage only costs the next visit its head start.
    }
  }
}
