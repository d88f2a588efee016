import { createRoot } from 'react-dom/client';
import { App } from './ui/App.tsx';
import { PeerController } from './lib/peer-controller.ts';
import { readPageParams } from './lib/params.ts';
import { installProbe } from './lib/probe.ts';
import 'uplot/dist/uPlot.min.css';
import './ui/styles.css';

const params = readPageParams(location.search);
const controller = new PeerController(params);
installProbe(controller);
createRoot(document.getElementById('root')!).render(<App controller={controller} />);
if (params.autojoin) controller.join();
showIsolation();

/** Says whether WASM can use threads here, and why not: the volunteer (or operator) sees it without dev tools. */
function showIsolation(): void {
  const line = document.getElementById('isolation');
  if (!line) return;
  const viaWorker = !!navigator.serviceWorker?.controller;
  const failure = (window as { __swarmCoiError?: string }).__swarmCoiError;
  line.dataset.isolated = String(crossOriginIsolated);
  line.textContent = crossOriginIsolated
    ? `Cross-origin isolated (${viaWorker ? 'by the service worker' : 'by the server\'s headers'}): WASM may use several threads.`
    : `Not cross-origin isolated${failure ? ` (the service worker failed: ${failure})` : !isSecureContext ? ' (the page is not served over https)' : ''}: WASM runs on one thread.`;
}
