// The node simulator's network: who is linked to whom (the topology), and what each link does to a payload
// (latency, bandwidth, loss). Everything is drawn from the run seed, so the same seed gives the same network.
import { createRng, deriveSeed } from '../../../core/util/random.ts';
import { DEFAULT_MAX_NEIGHBOURS } from '../../../p2p/constants.ts';

export type Topology = { kind: 'auto' } | { kind: 'full' } | { kind: 'ring' } | { kind: 'regular'; degree: number } | { kind: 'small-world'; degree: number; rewire: number };

export class TopologyError extends Error {
  static override readonly name = 'TopologyError';
  override readonly name = TopologyError.name;
}

/**
 * `auto` (what tabs build: a full mesh up to the dial policy's neighbour cap, then a random graph of that degree),
 * `full`, `ring`, `regular:<k>`, `small-world:<k>:<p>` (Watts–Strogatz: ring lattice of degree k, rewired with p).
 */
export function parseTopology(raw: string): Topology {
  if (raw === 'auto' || raw === 'full' || raw === 'ring') return { kind: raw };
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
export function buildTopology(topology: Topology, n: number, seed: number): number[][] {
  // The dial policy keeps at most DEFAULT_MAX_NEIGHBOURS direct neighbours (an even degree, so k·n is always even).
  const t: Exclude<Topology, { kind: 'auto' }> =
    topology.kind === 'auto' ? (n <= DEFAULT_MAX_NEIGHBOURS + 1 ? { kind: 'full' } : { kind: 'regular', degree: DEFAULT_MAX_NEIGHBOURS }) : topology;
  const edges = new Set<string>();
  const add = (a: number, b: number) => {
    if (a !== b) edges.add(a < b ? `${a}-${b}` : `${b}-${a}`);
  };
  const rng = createRng(deriveSeed(seed, `topology/${topologyLabel(t)}/${n}`));
  if (t.kind === 'full') for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) add(a, b);
  else if (t.kind === 'ring') for (let a = 0; a < n; a++) add(a, (a + 1) % n);
  else if (t.kind === 'regular') {
    if (t.degree >= n || (t.degree * n) % 2 !== 0) throw new TopologyError(`a ${t.degree}-regular graph on ${n} peers does not exist (need k < n and k·n even)`);
    // A circulant graph (each peer linked to its k/2 nearest on each side, plus the opposite peer when k is odd),
    // randomised by double-edge swaps, which keep every degree: uniform enough, and it never fails to draw.
    for (let a = 0; a < n; a++) {
      for (let k = 1; k <= Math.floor(t.degree / 2); k++) add(a, (a + k) % n);
      if (t.degree % 2 === 1) add(a, (a + n / 2) % n);
    }
    const list = [...edges].map((e) => e.split('-').map(Number) as [number, number]);
    for (let swap = 0; swap < 10 * list.length; swap++) {
      const i = Math.floor(rng() * list.length);
      const j = Math.floor(rng() * list.length);
      const [a, b] = list[i];
      const [c, d] = rng() < 0.5 ? list[j] : [list[j][1], list[j][0]];
      const key = (x: number, y: number) => (x < y ? `${x}-${y}` : `${y}-${x}`);
      if (i === j || a === d || c === b || a === c || b === d || edges.has(key(a, d)) || edges.has(key(c, b))) continue;
      edges.delete(key(a, b));
      edges.delete(key(c, d));
      edges.add(key(a, d));
      edges.add(key(c, b));
      list[i] = [a, d];
      list[j] = [c, b];
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
