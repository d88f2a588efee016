import { useState, useSyncExternalStore } from 'react';
import type { PeerController } from '../lib/peer-controller.ts';
import { Volunteer } from './Volunteer.tsx';
import { RunScreen } from './RunScreen.tsx';
import { Dashboard } from './Dashboard.tsx';

type Screen = 'volunteer' | 'run' | 'dashboard';

export function App({ controller }: { controller: PeerController }) {
  const state = useSyncExternalStore(controller.subscribe, controller.snapshot);
  const [screen, setScreen] = useState<Screen>(() => (new URLSearchParams(location.search).get('view') === 'dashboard' ? 'dashboard' : 'volunteer'));
  return (
    <div className="app">
      <header>
        <h1>Swarm</h1>
        <nav>
          {(['volunteer', 'run', 'dashboard'] as const).map((s) => (
            <button key={s} className={screen === s ? 'tab active' : 'tab'} onClick={() => setScreen(s)}>
              {s === 'volunteer' ? 'Volunteer' : s === 'run' ? 'Run' : 'Dashboard'}
            </button>
          ))}
        </nav>
      </header>
      {screen === 'volunteer' && <Volunteer controller={controller} state={state} />}
      {screen === 'run' && <RunScreen state={state} />}
      {screen === 'dashboard' && <Dashboard controller={controller} />}
    </div>
  );
}
