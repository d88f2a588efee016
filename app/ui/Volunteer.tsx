import { useState } from 'react';
import type { PeerController, PeerState, RunLookup } from '../lib/peer-controller.ts';
import { LossChart } from './LossChart.tsx';
import { describePrivacySpent } from '../../core/privacy/describe.ts';

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}

const fmt = (v: number | null | undefined, digits = 3) => (v === null || v === undefined ? '–' : v.toFixed(digits));

const PHASE_TEXT: Record<string, string> = {
  loading: 'This tab is loading the model and data…',
  bootstrapping: 'This tab is asking peers for the swarm’s current adapter…',
  training: 'This tab is training',
  paused: 'Training is paused',
  done: 'This tab has finished its steps',
  error: 'Training stopped because of an error',
};

function Stat({ label, value, testId }: { label: string; value: string; testId?: string }) {
  return (
    <div className="stat">
      <div className="value" data-testid={testId}>{value}</div>
      <div className="label">{label}</div>
    </div>
  );
}

export function Volunteer({ controller, state }: { controller: PeerController; state: PeerState }) {
  const [prompt, setPrompt] = useState('The detective looked at the door and');
  const [duty, setDuty] = useState(controller.params.duty);
  const [slowHidden, setSlowHidden] = useState(false);
  const st = state.status;
  const info = state.info;
  const net = state.network;
  const lookup = state.runLookup;

  const errors = (
    <div className="errors" role="alert" data-testid="errors">
      {state.errors.map((e, i) => (
        <div key={i} className="error">
          <strong>{errorTitle(e.kind)}</strong> {e.message}
        </div>
      ))}
    </div>
  );

  if (!state.joined) {
    return (
      <section className="panel join">
        <p>
          Lend this tab’s spare compute to a shared language model. Your tab trains a small adapter on a share of the Brown
          corpus, swaps it with other tabs peer to peer, and merges what it receives. Text you add stays in this tab.
        </p>
        <button className="primary" data-testid="join" onClick={() => controller.join()}>
          Join the default run
        </button>
        {errors}
      </section>
    );
  }

  const ownGenres = st?.data.filter((d) => d.kind === 'corpus').map((d) => d.name).join(', ') ?? '';
  const dataBytes = st?.data.reduce((n, d) => n + d.bytes, 0) ?? 0;
  return (
    <section className="volunteer">
      {errors}
      <div className="status-line" data-testid="phase">
        <span className={`dot ${st?.phase ?? 'loading'}`} /> {!st && lookup?.state === 'looking' ? lookingText(lookup) : PHASE_TEXT[st?.phase ?? 'loading']}
        {lookup?.state === 'found' && lookup.fromPeer && <> · run manifest from peer …{lookup.fromPeer.slice(-6)}</>}
        {st?.adoptedFrom && <> · started from peer …{st.adoptedFrom.peerId.slice(-6)}’s adapter (its step {st.adoptedFrom.step})</>}
        {st?.resumedFromStep !== null && st?.resumedFromStep !== undefined && <> · resumed at step {st.resumedFromStep}</>}
      </div>
      <div className="stats">
        <Stat label="backend" value={st ? `${st.backend}${info?.adapterInfo && st.backend === 'webgpu' ? ` (${info.adapterInfo})` : ''}${info?.threads && st.backend === 'wasm' ? ` · ${info.threads} thread${info.threads > 1 ? 's' : ''}` : ''}` : '–'} testId="backend" />
        <Stat label="tokens / s" value={fmt(st?.tokensPerSecond, 0)} testId="tps" />
        <Stat label="local step" value={String(st?.step ?? 0)} testId="step" />
        <Stat label="training loss" value={fmt(st?.trainLoss)} />
        <Stat label={`held-out loss (base ${fmt(st?.baseHeldOut?.own)})`} value={fmt(st?.heldOut?.own)} testId="heldout" />
        <Stat label="peers connected" value={String(net.neighbours.length)} testId="peers" />
        <Stat label="merges done" value={String(st?.merges ?? 0)} testId="merges" />
        <Stat label="sent / received" value={`${bytes(net.bytesSent)} / ${bytes(net.bytesReceived)}`} testId="traffic" />
        <Stat label={`data used (${ownGenres || 'none yet'})`} value={`${bytes(st?.tokensSeen ?? 0)} of ${bytes(dataBytes)}`} />
        <Stat label="time donated" value={duration(st?.donatedMs ?? 0)} testId="donated" />
      </div>
      <div className="panel">
        <h2>Loss over time</h2>
        <LossChart loss={state.lossHistory} heldOut={state.heldOutHistory} merges={state.mergeHistory} />
        <p className="hint">Purple marks are merges with neighbours. Held-out loss is measured on text no peer trains on.</p>
      </div>
      <div className="columns">
        <div className="panel">
          <h2>Controls</h2>
          <div className="row">
            {st?.phase === 'paused' ? (
              <button data-testid="resume" onClick={() => controller.resume()}>Resume</button>
            ) : (
              <button data-testid="pause" onClick={() => controller.pause()} disabled={!st || st.phase === 'error' || st.phase === 'done'}>Pause</button>
            )}
          </div>
          <label className="row">
            Train {Math.round(duty * 100)}% of the time
            <input type="range" min={0.1} max={1} step={0.05} value={duty} data-testid="throttle"
              onChange={(e) => {
                const v = Number(e.target.value);
                setDuty(v);
                controller.throttle(v, slowHidden);
              }} />
          </label>
          <label className="row">
            <input type="checkbox" checked={slowHidden} onChange={(e) => {
              setSlowHidden(e.target.checked);
              controller.throttle(duty, e.target.checked);
            }} />
            train slower while this tab is hidden
          </label>
          <label className="row">
            Add my own text files (they never leave this tab):
            <input type="file" accept=".txt,text/plain" multiple data-testid="files" onChange={(e) => e.target.files && controller.addLocalFiles(e.target.files)} />
          </label>
          {st && (
            <p className={`hint privacy${st.privacy?.exhausted ? ' warning' : ''}`}>
              <span data-testid="privacy">{describePrivacySpent(st.privacy ?? null)}</span>
              {' · '}<a href="privacy.html" target="_blank" rel="noopener" data-testid="privacy-help">what this means</a>
            </p>
          )}
          <div className="row">
            <button data-testid="download" onClick={() => controller.downloadPeft()} disabled={!info}>Download adapter (PEFT)</button>
          </div>
          <h3>Run (fixed once joined)</h3>
          <dl className="facts">
            <dt>run</dt><dd>{info ? `${info.manifest.runId} · ${info.manifestId.slice(0, 12)}…` : '…'}</dd>
            <dt>strategy</dt><dd data-testid="strategy">{info ? `${info.manifest.strategy.name}, every ${info.manifest.localSteps} steps` : '…'}</dd>
            <dt>peer</dt><dd>{net.peerId ? `…${net.peerId.slice(-8)}` : 'not connected'} · slot {state.slot}</dd>
            <dt>checkpoint</dt><dd data-testid="checkpoint">{st?.checkpoint ? `step ${st.checkpoint.step}, ${new Date(st.checkpoint.atMs).toLocaleTimeString()}` : 'none yet'}</dd>
          </dl>
        </div>
        <div className="panel">
          <h2>Try it</h2>
          <textarea value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={2} data-testid="prompt" />
          <button onClick={() => controller.tryIt(prompt)} disabled={!info || state.generating} data-testid="generate">
            {state.generating ? 'Generating…' : 'Generate'}
          </button>
          {state.generated && (
            <div className="side-by-side">
              <div><h3>Base model</h3><pre data-testid="gen-base">{prompt}<b>{state.generated.base}</b></pre></div>
              <div><h3>With the swarm’s adapter</h3><pre data-testid="gen-adapted">{prompt}<b>{state.generated.adapted}</b></pre></div>
            </div>
          )}
          <h2>Neighbours’ adapters</h2>
          {st?.health.state === 'unhealthy' && (
            <p className="warning" data-testid="health">This peer is in trouble: {st.health.reason}. It keeps training from its last good state.</p>
          )}
          <table className="neighbours">
            <thead><tr><th>peer</th><th>version</th><th>their step</th><th>age</th><th>weight</th><th title="adapters the update guard clipped / refused">clipped / refused</th></tr></thead>
            <tbody>
              {(st?.neighbours ?? []).map((n) => (
                <tr key={n.peerId}>
                  <td>…{n.peerId.slice(-8)}</td><td>{n.version}</td><td>{n.step}</td><td>{duration(n.ageMs)}</td><td>{n.weight.toFixed(2)}</td>
                  <td>{st?.guard.byPeer[n.peerId] ? `${st.guard.byPeer[n.peerId].clipped} / ${st.guard.byPeer[n.peerId].refused}` : '0 / 0'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p className="hint" data-testid="guard">
            Update guard: {st?.guard.clipped ?? 0} neighbour adapter(s) clipped, {st?.guard.refused ?? 0} refused, {st?.guard.mergesRefused ?? 0} merge result(s) kept out.
          </p>
          <h2>Messages</h2>
          <ul className="notices">
            {state.notices.slice(-8).reverse().map((n, i) => <li key={i} className={n.level}>{new Date(n.atMs).toLocaleTimeString()} {n.message}</li>)}
          </ul>
        </div>
      </div>
    </section>
  );
}

function lookingText(lookup: RunLookup): string {
  const answers = lookup.notFound + lookup.rejected;
  return `Looking for run ${lookup.id.slice(0, 12)}… among peers${answers > 0 ? ` (${answers} answered without it so far)` : ''}…`;
}

function errorTitle(kind: string): string {
  switch (kind) {
    case 'no-webgpu': return 'No WebGPU.';
    case 'relay-unreachable': return 'Relay unreachable.';
    case 'run-mismatch': return 'Run mismatch.';
    case 'run-link': return 'Bad run link.';
    case 'run-lookup': return 'Run not found.';
    case 'storage-full': return 'Storage full.';
    case 'model-load': return 'Model not loaded.';
    default: return 'Error.';
  }
}
