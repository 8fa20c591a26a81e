// An MLLP receiver that is not ours: node-hl7-server, answering every message with its own ACK.
//
//   node server.js [--host 127.0.0.1] [--port 0] [--ack AA]
//
// Prints one JSON object a line on stdout:
//   {"event": "listening", "port": P}
//   {"event": "wire", "connection": N, "data_b64": "..."}      bytes as they came off the socket
//   {"event": "message", "connection": N, "raw": "...", "control_id": "...", "type": "...",
//    "ack": "..."}                                              one per message node-hl7-server
//                                                               handed to us, with the ACK it sent
// and runs until stdin closes or it gets SIGTERM.
'use strict'

const { Server } = require('node-hl7-server')

function option (name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback
}

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

const host = option('host', '127.0.0.1')
const ackCode = option('ack', 'AA')
let connections = 0
// The text node-hl7-server emits as 'data.raw' just before it calls the handler (same tick).
let lastRaw = null

const server = new Server({ bindAddress: host })
const inbound = server.createInbound({ port: Number(option('port', '0')) }, async (req, res) => {
  const message = req.getMessage()
  const raw = lastRaw
  await res.sendResponse(ackCode)
  emit({
    event: 'message',
    connection: connections,
    raw,
    parsed: message.toString(),
    control_id: message.get('MSH.10').toString(),
    type: message.get('MSH.9').toString(),
    ack: res.getAckMessage().toString()
  })
})

inbound.on('data.raw', (text) => { lastRaw = text })
inbound.on('client.connect', (socket) => {
  const connection = ++connections
  // The library set the socket's encoding to utf-8, so chunks come as strings: back to bytes.
  socket.on('data', (chunk) => {
    emit({ event: 'wire', connection, data_b64: Buffer.from(chunk, 'utf8').toString('base64') })
  })
})
inbound.on('data.error', (err) => emit({ event: 'error', error: String(err) }))
inbound.on('listen', () => emit({ event: 'listening', port: inbound._socket.address().port }))

function stop () {
  inbound.close().finally(() => process.exit(0))
}
process.on('SIGTERM', stop)
process.stdin.on('end', stop)
process.stdin.resume()
