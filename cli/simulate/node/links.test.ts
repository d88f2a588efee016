import { describe, expect, it } from 'vitest';
import { arrival, buildTopology, parseTopology, TopologyError } from './links.ts';

function connected(adjacency: number[][]): boolean {
  const seen = new Set([0]);
  const stack = [0];
  while (stack.length) for (const n of adjacency[stack.pop()!]) if (!seen.has(n)) seen.add(n), stack.push(n);
  return seen.size === adjacency.length;
}

describe('simulated topologies', () => {
  it('builds each topology with the degrees it promises, symmetric, without self-links, connected', () => {
    const cases: Array<[string, number, (deg: number) => boolean]> = [
      ['full', 9, (d) => d === 8],
      ['ring', 10, (d) => d === 2],
      ['regular:12', 64, (d) => d === 12],
      ['regular:12', 16, (d) => d === 12],
      ['regular:3', 10, (d) => d === 3],
      ['auto', 13, (d) => d === 12],
      ['auto', 64, (d) => d === 12],
      ['small-world:4:0.2', 30, (d) => d >= 1],
    ];
    for (const [raw, n, degreeOk] of cases) {
      const adjacency = buildTopology(parseTopology(raw), n, 7);
      expect(adjacency).toHaveLength(n);
      for (const [a, list] of adjacency.entries()) {
        expect(degreeOk(list.length), `${raw} on ${n}: peer ${a} has degree ${list.length}`).toBe(true);
        expect(list).not.toContain(a);
        expect(new Set(list).size).toBe(list.length);
        for (const b of list) expect(adjacency[b]).toContain(a);
      }
      expect(connected(adjacency), `${raw} on ${n} is connected`).toBe(true);
    }
    // A random graph depends on the seed, and only on it.
    expect(buildTopology(parseTopology('regular:12'), 64, 1)).toEqual(buildTopology(parseTopology('regular:12'), 64, 1));
    expect(buildTopology(parseTopology('regular:12'), 64, 1)).not.toEqual(buildTopology(parseTopology('regular:12'), 64, 2));
  });

  it('refuses impossible or malformed topologies by name', () => {
    expect(() => buildTopology(parseTopology('regular:3'), 5, 1)).toThrow(TopologyError);
    expect(() => parseTopology('star')).toThrow(/full, ring, regular/);
  });

  it('a payload arrives after latency plus its size over the bandwidth; drops follow the seed and the share', () => {
    // 1 MB over 8 Mbit/s = 1000 ms, plus 20 ms latency.
    expect(arrival({ latencyMs: 20, bandwidthBps: 8e6, drop: 0 }, 1, 0, 1, 1, 5000, 1_000_000)).toBe(6020);
    expect(arrival({ latencyMs: 20, bandwidthBps: 0, drop: 0 }, 1, 0, 1, 1, 5000, 1_000_000)).toBe(5020);
    const link = { latencyMs: 5, bandwidthBps: 0, drop: 0.3 };
    const dropped = Array.from({ length: 2000 }, (_, v) => arrival(link, 3, 0, 1, v, 0, 10) === null).filter(Boolean).length;
    expect(dropped / 2000).toBeGreaterThan(0.26);
    expect(dropped / 2000).toBeLessThan(0.34);
    expect(arrival(link, 3, 0, 1, 17, 0, 10)).toBe(arrival(link, 3, 0, 1, 17, 0, 10));
  });
});
