// Asks the configured STUN and TURN servers for candidates once, so a wrong TURN password or an unreachable server is
// told to the volunteer in words; libp2p's WebRTC transport would only see dials that fail without saying why.
import type { IceServer } from '../../p2p/relay-config.ts';

export interface IceCheck {
  /** Candidate types gathered: host, srflx (STUN answered), relay (TURN allocated). */
  candidateTypes: string[];
  /** One sentence per server that failed. */
  problems: string[];
}

export async function checkIceServers(iceServers: IceServer[], timeoutMs = 10_000): Promise<IceCheck> {
  if (iceServers.length === 0 || typeof RTCPeerConnection === 'undefined') return { candidateTypes: [], problems: [] };
  const pc = new RTCPeerConnection({ iceServers });
  const types = new Set<string>();
  const errors = new Map<string, string>();
  pc.addEventListener('icecandidate', (evt) => {
    if (evt.candidate?.type) types.add(evt.candidate.type);
  });
  pc.addEventListener('icecandidateerror', (evt) => {
    const e = evt as RTCPeerConnectionIceErrorEvent;
    const why = e.errorCode === 401 ? 'refused the credentials (401 Unauthorized)' : e.errorCode === 701 ? 'did not answer' : `answered ${e.errorCode} ${e.errorText}`;
    errors.set(e.url, why);
  });
  try {
    pc.createDataChannel('ice-check');
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  } finally {
    pc.close();
  }
  const problems: string[] = [];
  const wantsTurn = iceServers.some((s) => s.urls.some((u) => u.startsWith('turn')));
  const wantsStun = iceServers.some((s) => s.urls.some((u) => u.startsWith('stun')));
  // Chromium reports an error per local interface and URL; one line per URL is enough.
  for (const [url, why] of errors) problems.push(`${url.startsWith('turn') ? 'TURN' : 'STUN'} server ${url} ${why}.`);
  if (wantsTurn && !types.has('relay') && ![...errors.keys()].some((u) => u.startsWith('turn'))) problems.push('No TURN server gave a relay address; tabs behind strict NATs will not connect.');
  if (wantsStun && !types.has('srflx') && !types.has('relay') && errors.size === 0) problems.push('No STUN server answered; tabs in other networks may not connect.');
  return { candidateTypes: [...types].sort(), problems };
}
