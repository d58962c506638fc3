// The permessage-deflate rows for Node's ws: the same corpus as
// ws_bench::deflate_corpus (same generator), compressed by a client
// PerMessageDeflate and inflated by a server one (negotiated through ws's
// own offer/accept, context takeover, zlib defaults: level 6, 15-bit
// windows). Prints `NAME SIZE_RATIO MB_PER_S` (best of 5).
'use strict';
const PerMessageDeflate = require('./node_modules/ws/lib/permessage-deflate');
const extension = require('./node_modules/ws/lib/extension');

const WORDS = ['the', 'socket', 'message', 'frame', 'server', 'client', 'compress', 'window', 'context',
  'takeover', 'payload', 'stream', 'buffer', 'latency', 'bytes', 'close', 'ping', 'json',
  'record', 'value', 'memory', 'limit', 'deflate', 'connection'];
let seed = 12345;
const next = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 16) & 0x7fff;
};
const json = [];
for (let i = 0; i < 2000; i++) {
  const tags = [];
  const nt = next() % 5 + 1;
  for (let t = 0; t < nt; t++) tags.push(`"${WORDS[next() % 24]}"`);
  const user = next() % 1000;
  const action = WORDS[next() % 24];
  const score = next() % 10000;
  const tagText = tags.join(',');
  const a = WORDS[next() % 24], b = WORDS[next() % 24], c = WORDS[next() % 24];
  json.push(`{"id":${i},"user":"user${user}","action":"${action}","score":${score},"tags":[${tagText}],"note":"${a} ${b} ${c}"}`);
}
const prose = [];
for (let i = 0; i < 500; i++) {
  const n = 200 + next() % 400;
  const words = [];
  for (let w = 0; w < n; w++) words.push(WORDS[next() % 24]);
  prose.push(words.join(' '));
}

function pair() {
  const client = new PerMessageDeflate({ threshold: 0 }, false, 0);
  const server = new PerMessageDeflate({ threshold: 0 }, true, 0);
  const offer = extension.format({ 'permessage-deflate': [client.offer()] });
  const accepted = server.accept(extension.parse(offer)['permessage-deflate']);
  const response = extension.format({ 'permessage-deflate': [accepted] });
  client.accept(extension.parse(response)['permessage-deflate']);
  return { client, server };
}

const compress = (pmd, data) => new Promise((res, rej) => pmd.compress(data, true, (e, d) => (e ? rej(e) : res(d))));
const decompress = (pmd, data) => new Promise((res, rej) => pmd.decompress(data, true, (e, d) => (e ? rej(e) : res(d))));

async function run(name, messages) {
  const bufs = messages.map((m) => Buffer.from(m));
  const raw = bufs.reduce((n, b) => n + b.length, 0);
  let best = Infinity;
  let wire = 0;
  for (let r = 0; r < 5; r++) {
    const { client, server } = pair();
    const start = process.hrtime.bigint();
    let payload = 0, got = 0;
    for (const b of bufs) {
      const z = await compress(client, b);
      payload += z.length;
      const out = await decompress(server, z);
      got += out.length;
    }
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    if (got !== raw) throw new Error('size mismatch');
    best = Math.min(best, secs);
    wire = payload;
    client.cleanup();
    server.cleanup();
  }
  console.log(`${name} ${(wire / raw).toFixed(4)} ${(raw / best / 1e6).toFixed(1)}`);
}

(async () => {
  await run('json', json);
  await run('prose', prose);
})();
