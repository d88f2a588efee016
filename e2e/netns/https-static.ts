// A plain static https server for the built site (not Vite), as any static host would be. With --isolation-headers
// it sends COOP/COEP like a host that allows headers; without, the page must isolate itself with its service worker.
// usage: https-static.ts <dir> <host> <port> <cert.pem> <key.pem> [--isolation-headers]
import { createServer } from 'node:https';
import { readFileSync, createReadStream, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';

const [dir, host, port, certFile, keyFile, ...flags] = process.argv.slice(2);
const isolation = flags.includes('--isolation-headers');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.txt': 'text/plain; charset=utf-8',
};

const root = normalize(dir) + sep;
const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'https://x').pathname);
  let file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
  if (!file.startsWith(root)) {
    res.writeHead(403).end();
    return;
  }
  try {
    if (statSync(file).isDirectory()) file = join(file, 'index.html');
    const size = statSync(file).size;
    const headers: Record<string, string | number> = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': size };
    if (isolation) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    res.writeHead(200, headers);
    createReadStream(file).pipe(res);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  }
});
server.listen(Number(port), host, () => console.log(`static https://${host}:${port}/ ${isolation ? 'with' : 'without'} isolation headers`));
