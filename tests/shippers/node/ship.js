// Sends the lines of a file through one real Node.js shipper, configured as its README says, to logllm serve.
// Used by tests/service/test_shippers_node.py. Usage: node ship.js <shipper> <base url> <lines file> [options JSON]
//   shipper: winston-loki | pino-loki | otel
//   options: source (service name, default "hdfs"), token (sent as Basic auth: Loki libraries; Bearer: otel),
//            json (winston-loki: JSON instead of protobuf+snappy), messageFormat (winston-loki: send the message
//            alone), retryMs (winston-loki: its fixed 60 s re-send interval, shortened for a bounded test),
//            waitMs (how long to wait for delivery before giving up)
// Prints one JSON line: {shipper, sent, errors, undelivered}.
'use strict'

const fs = require('fs')

const [shipper, url, file, optionsText] = process.argv.slice(2)
const options = JSON.parse(optionsText || '{}')
const source = options.source || 'hdfs'
const lines = fs.readFileSync(file, 'utf8').split('\n').filter(line => line.trim() !== '')
const errors = []
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function winstonLoki () {
  const winston = require('winston')
  const LokiTransport = require('winston-loki')
  const transport = new LokiTransport({
    host: url,
    labels: { service_name: source },
    json: Boolean(options.json),
    basicAuth: options.token ? `logllm:${options.token}` : undefined,
    interval: 0.2,
    gracefulShutdown: false,
    format: options.messageFormat ? winston.format.printf(info => info.message) : undefined,
    onConnectionError: err => errors.push(String(err && err.message ? err.message : err))
  })
  if (options.retryMs) transport.batcher.circuitBreakerInterval = options.retryMs // 60000 in the library
  const logger = winston.createLogger({ level: 'info', transports: [transport] })
  for (const line of lines) logger.info(line)
  const deadline = Date.now() + (options.waitMs || 30000)
  const batcher = transport.batcher
  // the batcher empties its batch when it sends and puts it back when the push fails
  while (Date.now() < deadline && (batcher.batch.streams.length > 0 || batcher.batchesSending > 0)) await sleep(50)
  const undelivered = batcher.batch.streams.reduce((n, s) => n + s.entries.length, 0)
  batcher.runLoop = false
  if (batcher.waitResolve) batcher.waitResolve()
  return undelivered
}

async function pinoLoki () {
  const pino = require('pino')
  const { pinoLoki } = require('pino-loki')
  const stream = pinoLoki({
    host: url,
    labels: { service_name: source },
    basicAuth: options.token ? { username: 'logllm', password: options.token } : undefined,
    batching: { interval: 0.2 }
  })
  const originalError = console.error
  console.error = (...args) => errors.push(args.join(' '))
  const logger = pino(stream)
  for (const line of lines) logger.info(line)
  await new Promise(resolve => { stream.on('close', resolve); stream.end() })
  console.error = originalError
  return null // pino-loki keeps nothing to re-send
}

async function otel () {
  const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs')
  const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http')
  const { resourceFromAttributes } = require('@opentelemetry/resources')
  const { diag, DiagLogLevel } = require('@opentelemetry/api')
  diag.setLogger({
    error: m => errors.push(m), warn: m => errors.push(m), info: m => errors.push(m), debug: () => {}, verbose: () => {}
  }, DiagLogLevel.INFO)
  const exporter = new OTLPLogExporter({
    url: `${url}/v1/logs`,
    headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
    compression: options.gzip ? 'gzip' : 'none'
  })
  const processor = new BatchLogRecordProcessor({
    exporter, scheduledDelayMillis: 200, maxExportBatchSize: 500, maxQueueSize: 4096
  })
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ 'service.name': source }),
    processors: [processor]
  })
  const logger = provider.getLogger('ship')
  for (const line of lines) logger.emit({ body: line, severityText: 'INFO', attributes: { 'log.level': 'info' } })
  await provider.forceFlush()
  await provider.shutdown()
  return null
}

const run = { 'winston-loki': winstonLoki, 'pino-loki': pinoLoki, otel }[shipper]
if (!run) {
  console.error(`unknown shipper ${shipper}`)
  process.exit(2)
}
run().then(undelivered => {
  process.stdout.write(JSON.stringify({ shipper, sent: lines.length, errors, undelivered }) + '\n')
  process.exit(0)
}, err => {
  process.stdout.write(JSON.stringify({ shipper, sent: lines.length, errors: [...errors, String(err)] }) + '\n')
  process.exit(1)
})
