// The node simulator's network: who is linked to whom (the topology), and what each link does to a payload
// (latency, bandwidth, loss). Everything is drawn from the run seed, so the same seed gives the same network.
import { createRng, deriveSeed } from '../../../core/util/random.ts';

export type Topology = { kind: 'full' } | { kind: 'ring' } | { kind: 'regular'; degree: number } | { kind: 'small-world'; degree: number; rewire: number };

export class TopologyError extends Error {
  static override readonly name = 'TopologyError';
  override readonly name = TopologyError.name;
}

/** `full`, `ring`, `regular:<k>`, `small-world:<k>:<p>` (Watts–Strogatz: ring lattice of degree k, rewired with p). */
export function parseTopology(raw: string): Topology {
  if (raw === 'full' || raw === 'ring') return { kind: raw };
  const regular = /^regular:(\d+)$/.exec(raw);
  if (regular) return { kind: 'regular', degree: Number(regular[1]) };
  const small = /^small-world:(\d+):(0(?:\.\d+)?|1(?:\.0+)?)$/.exec(raw);
  if (small) return { kind: 'small-world', degree: Number(small[1]), rewire: Number(small[2]) };
  throw new TopologyError(`--topology must be full, ring, regular:<k> or small-world:<k>:<p>, got '${raw}'`);
}

export function topologyLabel(t: Topology): string {
  return t.kind === 'regular' ? `regular:${t.degree}` : t.kind === 'small-world' ? `small-world:${t.degree}:${t.rewire}` : t.kind;
}

/** Undirected adjacency lists, sorted; never a self-link. */
export function buildTopology(t: Topology, n: number, seed: number): number[][] {
  const edges = new Set<string>();
  const add = (a: number, b: number) => {
    if (a !== b) edges.add(a < b ? `${a}-${b}` : `${b}-${a}`);
  };
  const rng = createRng(deriveSeed(seed, `topology/${topologyLabel(t)}/${n}`));
  if (t.kind === 'full') for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) add(a, b);
  else if (t.kind === 'ring') for (let a = 0; a < n; a++) add(a, (a + 1) % n);
  else if (t.kind === 'regular') {
    if (t.degree >= n || (t.degree * n) % 2 !== 0) throw new TopologyError(`a ${t.degree}-regular graph on ${n} peers does not exist (need k < n and k·n even)`);
    // Random k-regular by the pairing model, retried until it has no self-links or double edges.
    for (let attempt = 0; attempt < 1000; attempt++) {
      edges.clear();
      const stubs = Array.from({ length: n * t.degree }, (_, i) => Math.floor(i / t.degree));
      for (let i = stubs.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [stubs[i], stubs[j]] = [stubs[j], stubs[i]];
      }
      let ok = true;
      for (let i = 0; i < stubs.length; i += 2) {
        const [a, b] = [stubs[i], stubs[i + 1]];
        const key = a < b ? `${a}-${b}` : `${b}-${a}`;
        if (a === b || edges.has(key)) {
          ok = false;
          break;
        }
        edges.add(key);
      }
      if (ok) break;
      if (attempt === 999) throw new TopologyError(`could not draw a ${t.degree}-regular graph on ${n} peers`);
    }
  } else {
    const half = Math.max(1, Math.floor(t.degree / 2));
    for (let a = 0; a < n; a++) {
      for (let k = 1; k <= half; k++) {
        let b = (a + k) % n;
        if (rng() < t.rewire) {
          // Rewire to a random peer that is neither a nor already linked.
          for (let tries = 0; tries < 20; tries++) {
            const c = Math.floor(rng() * n);
            const key = a < c ? `${a}-${c}` : `${c}-${a}`;
            if (c !== a && !edges.has(key)) {
              b = c;
              break;
            }
          }
        }
        add(a, b);
      }
    }
  }
  const adjacency = Array.from({ length: n }, () => [] as number[]);
  for (const e of edges) {
    const [a, b] = e.split('-').map(Number);
    adjacency[a].push(b);
    adjacency[b].push(a);
  }
  return adjacency.map((list) => list.sort((x, y) => x - y));
}

export interface LinkModel {
  /** One-way latency, ms (> 0: it is also the coordinator's time window). */
  latencyMs: number;
  /** Bandwidth of every link, bits per second (0 = unlimited). */
  bandwidthBps: number;
  /** Share of payloads lost on a link, [0, 1). */
  drop: number;
}

/** When a payload of `bytes` sent at `sentMs` arrives, or null when the link drops it (seeded per link and version). */
export function arrival(link: LinkModel, seed: number, from: number, to: number, version: number, sentMs: number, bytes: number): number | null {
  if (link.drop > 0 && createRng(deriveSeed(seed, `drop/${from}/${to}/${version}`))() < link.drop) return null;
  const transferMs = link.bandwidthBps > 0 ? (bytes * 8 * 1000) / link.bandwidthBps : 0;
  return Math.ceil(sentMs + link.latencyMs + transferMs);
}
