// A client on Node's `ws` that checks a server's echo, for interop tests.
// Usage: node client.js URL ['{...perMessageDeflate options}']
// Sends text and binary messages of several sizes, checks each echo, and
// prints "ok <negotiated extensions>" before closing with 1000. Exits 1 on
// any mismatch, error or after 20 s.
'use strict';
const WebSocket = require('./node_modules/ws');
const crypto = require('crypto');
const [url, optsJson] = process.argv.slice(2);
const deflate = Object.assign({ threshold: 0 }, JSON.parse(optsJson || '{}'));
const fail = (why) => {
  console.log('FAIL ' + why);
  process.exit(1);
};
setTimeout(() => fail('timeout'), 20000).unref();
const messages = [
  'hello '.repeat(200),
  '',
  'Grüße, 世界 🌍 '.repeat(2000),
  Buffer.alloc(100000, 7),
  crypto.randomBytes(70000),
  JSON.stringify({ items: Array.from({ length: 500 }, (_, i) => ({ id: i, name: 'item' + i })) }),
];
const ws = new WebSocket(url, { perMessageDeflate: deflate, maxPayload: 256 << 20 });
let next = 0;
ws.on('open', () => {
  for (const m of messages) ws.send(m, { binary: Buffer.isBuffer(m) });
});
ws.on('message', (data, isBinary) => {
  const want = messages[next++];
  const wantBinary = Buffer.isBuffer(want);
  if (isBinary !== wantBinary) fail(`message ${next - 1}: binary ${isBinary}`);
  const same = wantBinary ? Buffer.compare(data, want) === 0 : data.toString('utf8') === want;
  if (!same) fail(`message ${next - 1} differs (${data.length} bytes)`);
  if (next === messages.length) {
    const pmd = ws._extensions['permessage-deflate'];
    const params = pmd ? Object.entries(pmd.params).map(([k, v]) => (v === true ? k : `${k}=${v}`)) : [];
    console.log('ok ' + (pmd ? ['permessage-deflate', ...params].join('; ') : 'no extension'));
    ws.close(1000, 'done');
  }
});
ws.on('close', (code) => process.exit(next === messages.length && code === 1000 ? 0 : 1));
ws.on('error', (e) => fail(e.message));
