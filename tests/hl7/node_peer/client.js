// An MLLP sender that is not ours: node-hl7-client, sending messages its own builder makes.
//
//   node client.js --host 127.0.0.1 --port P MESSAGE...
//
// Each MESSAGE is one of
//   file:PATH        the HL7 text in PATH (UTF-8), handed to node-hl7-client as a parsed Message;
//   build:JSON       a message node-hl7-client's builder makes, MSH-7 and MSH-10 its own choice:
//                    {"type": "ADT^A01", "patient": {...}} or
//                    {"type": "ORU^R01", "patient": {...}, "device": "EUI-64",
//                     "observations": [{"code": "150021^MDC_PRESS_BLD_NONINV_SYS^MDC",
//                                       "value": "120", "unit": "266016^MDC_DIM_MMHG^MDC",
//                                       "time": "20250301081500+0100"}, ...]}
//                    with patient {"national_id", "family", "given", "birth_date", "sex"}.
// They are sent in order over one connection, each after the previous one's ACK. Prints one
// JSON object a line on stdout: {"event": "sent", "index": i, "message": "..."} and
// {"event": "ack", "index": i, "ack": "..."}, then {"event": "done"}; exit status 1 (with
// {"event": "error", ...}) when an ACK does not come within --timeout seconds (default 10).
'use strict'

const fs = require('fs')
const { Client, Message } = require('node-hl7-client')
const { HL7_2_5, HL7_2_6 } = require('node-hl7-client/hl7')

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function fail (error) {
  emit({ event: 'error', error: String(error) })
  process.exit(1)
}

function parseArgs (argv) {
  const options = { host: '127.0.0.1', port: null, timeout: 10, messages: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--host') options.host = argv[++i]
    else if (arg === '--port') options.port = Number(argv[++i])
    else if (arg === '--timeout') options.timeout = Number(argv[++i])
    else options.messages.push(arg)
  }
  if (!options.port || options.messages.length === 0) {
    fail('usage: node client.js --host HOST --port PORT (file:PATH | build:JSON)...')
  }
  return options
}

function header (spec, code, trigger) {
  const message = new Message({
    specification: spec,
    messageHeader: { msh_9_1: code, msh_9_2: trigger, msh_11_1: 'P' }
  })
  message.set('MSH.3', 'NODEPEER')
  message.set('MSH.4', 'Node klinikk')
  message.set('MSH.5', 'TRYGGHEIM')
  message.set('MSH.6', 'BAERUM')
  message.set('MSH.18', 'UNICODE UTF-8')
  return message
}

// Component by component: a value set whole has its '^' escaped (\\S\\) by the builder.
function setComponents (segment, field, value) {
  value.split('^').forEach((component, n) => {
    if (component !== '') segment.set(`${field}.${n + 1}`, component)
  })
}

function pid (message, patient) {
  const segment = message.addSegment('PID')
  segment.set('1', '1')
  segment.set('3.1', patient.national_id)
  segment.set('3.4', 'NOR')
  segment.set('3.5', 'NNNOR')
  segment.set('5.1', patient.family)
  segment.set('5.2', patient.given)
  if (patient.birth_date) segment.set('7', patient.birth_date)
  if (patient.sex) segment.set('8', patient.sex)
}

function build (spec) {
  if (spec.type === 'ADT^A01') {
    const message = header(new HL7_2_5(), 'ADT', 'A01')
    message.addSegment('EVN').set('1', 'A01')
    pid(message, spec.patient)
    message.addSegment('PV1').set('2', 'O')
    return message
  }
  if (spec.type === 'ORU^R01') {
    const message = header(new HL7_2_6(), 'ORU', 'R01')
    pid(message, spec.patient)
    const obr = message.addSegment('OBR')
    obr.set('1', '1')
    setComponents(obr, '4', '182777000^monitoring of patient^SNOMED-CT')
    obr.set('7', spec.observations[0].time)
    spec.observations.forEach((obs, n) => {
      const obx = message.addSegment('OBX')
      obx.set('1', String(n + 1))
      obx.set('2', 'NM')
      setComponents(obx, '3', obs.code)
      obx.set('4', `1.0.0.${n + 1}`)
      obx.set('5', obs.value)
      setComponents(obx, '6', obs.unit)
      obx.set('11', 'R')
      obx.set('14', obs.time)
      setComponents(obx, '18', `${spec.device}^EUI-64`)
    })
    return message
  }
  throw new Error(`cannot build ${spec.type}`)
}

function load (arg) {
  if (arg.startsWith('file:')) return new Message({ text: fs.readFileSync(arg.slice(5), 'utf8') })
  if (arg.startsWith('build:')) return build(JSON.parse(arg.slice(6)))
  throw new Error(`${arg}: neither file:PATH nor build:JSON`)
}

async function main () {
  const options = parseArgs(process.argv.slice(2))
  const messages = options.messages.map(load)
  const client = new Client({ host: options.host })
  let waiting = null
  const connection = client.createConnection({ port: options.port }, async (response) => {
    if (waiting !== null) waiting(response.getMessage().toString())
  })
  connection.on('client.error', (err) => fail(err))
  for (const [index, message] of messages.entries()) {
    const acked = new Promise((resolve, reject) => {
      waiting = resolve
      setTimeout(() => reject(new Error(`no ACK for message ${index} in ${options.timeout} s`)),
        options.timeout * 1000).unref()
    })
    emit({ event: 'sent', index, message: message.toString() })
    await connection.sendMessage(message)
    emit({ event: 'ack', index, ack: await acked })
  }
  emit({ event: 'done' })
  await connection.close()
  process.exit(0)
}

main().catch(fail)
