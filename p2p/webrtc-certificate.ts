// The relay's WebRTC-Direct certificate. Browsers check it against the certhash in the relay's multiaddr, so it must
// outlive restarts: libp2p would make a new one at every start (it keeps one only with a persistent keychain), which
// would break every run link that names the relay. Node only.
import 'reflect-metadata';
import { createHash, webcrypto } from 'node:crypto';
import { BasicConstraintsExtension, X509Certificate, X509CertificateGenerator } from '@peculiar/x509';

/** What @libp2p/webrtc's webRTCDirect({ certificate }) takes. */
export interface WebRTCDirectCertificate {
  /** PKCS#8 PEM of the ECDSA P-256 key. */
  privateKey: string;
  /** PEM of the self-signed certificate. */
  pem: string;
  /** Multibase (base64url) sha2-256 multihash of the certificate's DER, as in /certhash/<...>. */
  certhash: string;
}

export class WebRTCCertificateError extends Error {
  static override readonly name = 'WebRTCCertificateError';
  override readonly name = 'WebRTCCertificateError';
}

/** A relay lives for years; browsers do not limit the lifetime of a WebRTC certificate (only its hash matters). */
export const WEBRTC_CERTIFICATE_LIFETIME_MS = 10 * 365 * 24 * 3600_000;

export function certhashOf(der: Uint8Array): string {
  const digest = createHash('sha256').update(der).digest();
  // 0x12 = sha2-256, 0x20 = 32 bytes; 'u' = base64url without padding.
  return 'u' + Buffer.concat([Buffer.from([0x12, 0x20]), digest]).toString('base64url');
}

function pem(label: string, der: ArrayBuffer): string {
  const body = Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----`;
}

export async function createWebRTCDirectCertificate(now = new Date()): Promise<WebRTCDirectCertificate> {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 3600_000);
  const cert = await X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
      name: 'CN=swarm-relay',
      notBefore,
      notAfter: new Date(notBefore.getTime() + WEBRTC_CERTIFICATE_LIFETIME_MS),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [new BasicConstraintsExtension(false, undefined, true)],
    },
    webcrypto as unknown as Crypto,
  );
  return {
    privateKey: pem('PRIVATE KEY', await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
    pem: cert.toString('pem'),
    certhash: certhashOf(new Uint8Array(cert.rawData)),
  };
}

/** Checks a stored certificate (from a file an operator may have edited) and recomputes its hash. */
export function parseWebRTCDirectCertificate(json: string): WebRTCDirectCertificate {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new WebRTCCertificateError(`not JSON: ${(err as Error).message}`);
  }
  const { privateKey, pem: certPem } = (value ?? {}) as Record<string, unknown>;
  if (typeof privateKey !== 'string' || !privateKey.includes('PRIVATE KEY') || typeof certPem !== 'string') {
    throw new WebRTCCertificateError('expected {"privateKey": "<PKCS#8 PEM>", "pem": "<certificate PEM>"}');
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new WebRTCCertificateError(`the certificate does not parse: ${(err as Error).message}`);
  }
  if (cert.notAfter.getTime() < Date.now()) throw new WebRTCCertificateError(`the certificate expired on ${cert.notAfter.toISOString()}`);
  return { privateKey, pem: certPem, certhash: certhashOf(new Uint8Array(cert.rawData)) };
}
