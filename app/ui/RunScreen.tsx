import type { PeerState } from '../lib/peer-controller.ts';
import { encodeRunLink } from '../../core/swarm/run.ts';

export function RunScreen({ state }: { state: PeerState }) {
  const info = state.info;
  if (!info) return <p className="placeholder">Join the run to see its manifest.</p>;
  const link = `${location.origin}${location.pathname}?run=${encodeRunLink(info.manifest)}`;
  return (
    <section className="panel">
      <h2>Run {info.manifest.runId}</h2>
      <dl className="facts">
        <dt>manifest id</dt><dd data-testid="manifest-id">{info.manifestId}</dd>
        <dt>wire run id</dt><dd>{info.wireRunId}</dd>
        <dt>base model</dt><dd>{info.manifest.baseModel.id} ({info.manifest.baseModel.url}, sha256 {info.manifest.baseModel.sha256.slice(0, 16)}…)</dd>
        <dt>adapter</dt><dd>LoRA r={info.manifest.lora.r}, alpha={info.manifest.lora.alpha} on {info.manifest.lora.targetModules.join(', ')} (schema {info.schemaHash})</dd>
        <dt>strategy</dt><dd>{info.manifest.strategy.name} {JSON.stringify(info.manifest.strategy.params)}</dd>
        <dt>local steps (H)</dt><dd>{info.manifest.localSteps}</dd>
        <dt>payload codec</dt><dd>{info.manifest.codec}</dd>
      </dl>
      <h3>Invite link</h3>
      <textarea readOnly className="link" value={link} rows={3} />
      <h3>Manifest</h3>
      <pre className="manifest">{JSON.stringify(info.manifest, null, 2)}</pre>
    </section>
  );
}
