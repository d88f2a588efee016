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
