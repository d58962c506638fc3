// An echo server on Node's `ws`, for interop tests and benchmarks.
// Usage: node echo_server.js [PORT] ['{"deflate": {...perMessageDeflate options} | false}']
// Prints the port it listens on (127.0.0.1), then echoes every message.
// Exits when its stdin closes, so a test that dies leaves no process behind.
'use strict';
const { WebSocketServer } = require('./node_modules/ws');
const port = Number(process.argv[2] || 0);
const opts = JSON.parse(process.argv[3] || '{}');
const perMessageDeflate =
  opts.deflate === false ? false : Object.assign({ threshold: 0 }, opts.deflate || {});
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate,
  maxPayload: 256 << 20,
});
wss.on('listening', () => console.log(wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
