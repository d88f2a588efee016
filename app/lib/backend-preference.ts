// The ?backend= choice, apart from backend.ts so that reading page parameters does not pull tfjs into the page.
import type { BackendPreference } from '../../core/swarm/engine-protocol.ts';

export function parseBackendPreference(value: string | null | undefined): BackendPreference {
  return value === 'webgpu' || value === 'wasm' || value === 'cpu' ? value : 'auto';
}
