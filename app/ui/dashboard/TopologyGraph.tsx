// The swarm's topology drawn by cytoscape: peers on a circle (size = steps trained, colour = the peer's chart
// colour, grey once left), this dashboard as a square, relays apart on the left as diamonds (they introduce peers
// and carry discovery gossip only). Positions are computed once per node so live updates never make it jump.
// Updates touch only what changed (a new node or link, a node's size or colour): rebuilding every element and
// refitting the view on each update is what made the graph the dashboard's most expensive part at 16–32 peers.
import { memo, useEffect, useRef } from 'react';
import cytoscape from 'cytoscape';
import { downloadCanvasPng } from './SeriesChart.tsx';

export interface GraphPeer {
  peerId: string;
  label: string;
  color: string;
  steps: number;
  present: boolean;
}

interface Props {
  peers: GraphPeer[];
  edges: Array<[string, string]>;
  observer: { peerId: string; connections: string[] } | null;
  relays: Array<{ peerId: string; connected: boolean }>;
}

const STYLE: cytoscape.StylesheetJson = [
  {
    selector: 'node',
    style: {
      label: 'data(label)', 'font-size': 11, 'text-valign': 'bottom', 'text-margin-y': 4, color: '#333',
      'background-color': 'data(color)', width: 'data(size)', height: 'data(size)', 'border-width': 1, 'border-color': '#555',
    },
  },
  { selector: 'node.left', style: { 'background-color': '#ccc', 'border-style': 'dashed', color: '#999' } },
  { selector: 'node.observer', style: { shape: 'round-rectangle', 'background-color': '#fff', 'border-width': 2, 'border-color': '#222' } },
  { selector: 'node.relay', style: { shape: 'diamond', 'background-color': '#f0f0f0', 'border-color': '#888' } },
  { selector: 'edge', style: { width: 2, 'line-color': '#6b7a99', 'curve-style': 'straight' } },
  { selector: 'edge.observer', style: { 'line-color': '#bbb', 'line-style': 'dotted', width: 1.5 } },
  { selector: 'edge.relay', style: { 'line-color': '#ccc', 'line-style': 'dashed', width: 1 } },
];

function size(steps: number, maxSteps: number): number {
  return 18 + 30 * Math.sqrt(maxSteps > 0 ? steps / maxSteps : 0);
}

export const TopologyGraph = memo(function TopologyGraph({ peers, edges, observer, relays }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const cy = useRef<cytoscape.Core | null>(null);

  useEffect(() => {
    if (!host.current) return;
    cy.current = cytoscape({ container: host.current, style: STYLE, layout: { name: 'preset' }, userZoomingEnabled: false, boxSelectionEnabled: false });
    return () => {
      cy.current?.destroy();
      cy.current = null;
    };
  }, []);

  useEffect(() => {
    const graph = cy.current;
    if (!graph) return;
    const maxSteps = Math.max(1, ...peers.map((p) => p.steps));
    const ring = [...peers.map((p) => p.peerId), ...(observer ? [observer.peerId] : [])];
    const radius = 110 + 8 * ring.length;
    const elements: cytoscape.ElementDefinition[] = [];
    ring.forEach((id, i) => {
      const angle = (2 * Math.PI * i) / Math.max(1, ring.length) - Math.PI / 2;
      const position = { x: radius * Math.cos(angle), y: radius * Math.sin(angle) };
      const peer = peers.find((p) => p.peerId === id);
      if (peer) {
        elements.push({ group: 'nodes', data: { id, label: peer.label, color: peer.color, size: size(peer.steps, maxSteps) }, position, classes: peer.present ? '' : 'left' });
      } else {
        elements.push({ group: 'nodes', data: { id, label: 'this dashboard', color: '#fff', size: 26 }, position, classes: 'observer' });
      }
    });
    relays.forEach((r, i) => {
      elements.push({
        group: 'nodes',
        data: { id: r.peerId, label: `relay …${r.peerId.slice(-6)}`, color: '#f0f0f0', size: 30 },
        position: { x: -radius - 150, y: -radius + 70 * i },
        classes: 'relay',
      });
      if (observer && r.connected) elements.push({ group: 'edges', data: { id: `r-${r.peerId}`, source: observer.peerId, target: r.peerId }, classes: 'relay' });
    });
    const known = new Set(ring);
    for (const [a, b] of edges) {
      if (known.has(a) && known.has(b)) elements.push({ group: 'edges', data: { id: `e-${a}-${b}`, source: a, target: b } });
    }
    if (observer) {
      for (const id of observer.connections) {
        if (known.has(id) && id !== observer.peerId && !edges.some(([a, b]) => (a === id && b === observer.peerId) || (b === id && a === observer.peerId))) {
          elements.push({ group: 'edges', data: { id: `o-${id}`, source: observer.peerId, target: id }, classes: 'observer' });
        }
      }
    }
    const wanted = new Set(elements.map((e) => e.data.id as string));
    let membershipChanged = false;
    graph.batch(() => {
      const gone = graph.elements().filter((e) => !wanted.has(e.id()));
      if (gone.nonempty()) {
        gone.remove();
        membershipChanged = true;
      }
      for (const def of elements) {
        const existing = graph.getElementById(def.data.id as string);
        if (existing.empty()) {
          graph.add(def);
          membershipChanged = true;
          continue;
        }
        if (def.group !== 'nodes') continue;
        for (const [k, v] of Object.entries(def.data)) if (existing.data(k) !== v) existing.data(k, v);
        const classes = (def.classes as string | undefined) ?? '';
        if (existing.classes().join(' ') !== classes) existing.classes(classes);
        const at = existing.position();
        if (def.position && (at.x !== def.position.x || at.y !== def.position.y)) existing.position(def.position);
      }
    });
    // Refitting measures every element; only a new or departed node or link can change what needs to fit.
    if (membershipChanged) graph.fit(undefined, 30);
  }, [peers, edges, observer, relays]);

  const peerEdges = edges.filter(([a, b]) => peers.some((p) => p.peerId === a) && peers.some((p) => p.peerId === b));
  return (
    <section className="dash-graph">
      <header>
        <h3>Topology</h3>
        <button
          className="small"
          data-testid="topology-png"
          onClick={() => {
            const canvas = host.current?.querySelector('canvas[data-id="layer2-node"]') as HTMLCanvasElement | null;
            const blob = cy.current?.png({ output: 'blob', bg: '#ffffff', full: true, scale: 2 });
            if (blob) {
              const url = URL.createObjectURL(blob);
              const a = document.createElement('a');
              a.href = url;
              a.download = 'topology.png';
              a.click();
              setTimeout(() => URL.revokeObjectURL(url), 10_000);
            } else if (canvas) downloadCanvasPng(canvas, 'topology.png');
          }}
        >
          PNG
        </button>
      </header>
      <div ref={host} className="graph" data-testid="topology" data-nodes={peers.filter((p) => p.present).length} data-edges={peerEdges.length} />
      <p className="legend">
        Circles: peers (size = steps trained; grey = left). Square: this dashboard. Diamonds: relays (introduce peers, hold no weights).
        Lines: direct WebRTC connections.
      </p>
    </section>
  );
});
