'use strict';
// The sample's protocol (protocol.h) for JavaScript agents: the structs defined once with koffi,
// and small helpers over fltport's FilterPort. test/integration checks every size, offset and
// constant here against the C compiler's (fltport-sample-layout.exe, built from protocol.h).
const koffi = require('koffi');

const constants = Object.freeze({
  FS_MAX_CONNECTIONS: 4,
  FS_CONTEXT_MAGIC: 0x53505446,
  FS_PROTOCOL_VERSION: 1,
  FS_CONNECT_AGENT: 0x1,
  FS_COMMAND_PING: 1,
  FS_COMMAND_GET_STATS: 2,
  FS_COMMAND_SET_CONFIG: 3,
  FS_MAX_PING_BYTES: 4096,
  FS_CONFIG_ENABLED: 0x1,
  FS_MAX_SUFFIX_CHARS: 32,
  FS_MIN_REPLY_TIMEOUT_MS: 1,
  FS_MAX_REPLY_TIMEOUT_MS: 60000,
  FS_DEFAULT_REPLY_TIMEOUT_MS: 3000,
  FS_EVENT_TIMEOUT_MS: 200,
  FS_MESSAGE_OPEN: 1,
  FS_MESSAGE_CONFIG_CHANGED: 2,
  FS_MAX_PATH_CHARS: 1024,
  FS_PATH_TRUNCATED: 0x1,
  FS_MAX_MESSAGE_BYTES: 2080,
  FS_VERDICT_ALLOW: 1,
  FS_VERDICT_DENY: 2,
  FS_REPLY_HEADER_BYTES: 16,
});

const PORT_NAME = '\\FltportSample';
const DEFAULT_SUFFIX = '.fltport-test';

const FS_CONNECT_CONTEXT = koffi.struct('FS_CONNECT_CONTEXT', {
  Magic: 'uint32',
  Version: 'uint32',
  Flags: 'uint32',
  Reserved: 'uint32',
});

const FS_COMMAND_HEADER = koffi.struct('FS_COMMAND_HEADER', {
  Command: 'uint32',
  PayloadBytes: 'uint32',
});

const FS_STATS = koffi.struct('FS_STATS', {
  OpensSeen: 'uint64',
  SelfSkipped: 'uint64',
  NotificationsSent: 'uint64',
  Replies: 'uint64',
  Denials: 'uint64',
  Timeouts: 'uint64',
  MalformedReplies: 'uint64',
  SendFailures: 'uint64',
  NoAgent: 'uint64',
  Connects: 'uint64',
  Refused: 'uint64',
  Disconnects: 'uint64',
  EventsSent: 'uint64',
  EventsDropped: 'uint64',
  Connections: 'uint32',
  Agents: 'uint32',
});

// UTF-16 arrays decode as Uint16Array ('Typed'): the C strings are counted, not NUL-terminated.
const FS_CONFIG = koffi.struct('FS_CONFIG', {
  Flags: 'uint32',
  ReplyTimeoutMs: 'uint32',
  SuffixBytes: 'uint32',
  Reserved: 'uint32',
  Suffix: koffi.array('uint16', constants.FS_MAX_SUFFIX_CHARS, 'Typed'),
});

const FS_OPEN_NOTIFICATION = koffi.struct('FS_OPEN_NOTIFICATION', {
  Kind: 'uint32',
  DesiredAccess: 'uint32',
  Sequence: 'uint64',
  ProcessId: 'uint64',
  PathBytes: 'uint16',
  PathFlags: 'uint16',
  Reserved: 'uint32',
  Path: koffi.array('uint16', constants.FS_MAX_PATH_CHARS, 'Typed'),
});

const FS_CONFIG_EVENT = koffi.struct('FS_CONFIG_EVENT', {
  Kind: 'uint32',
  Reserved: 'uint32',
  ChangeCount: 'uint64',
  Config: FS_CONFIG,
});

const FS_OPEN_REPLY = koffi.struct('FS_OPEN_REPLY', {
  Sequence: 'uint64',
  Verdict: 'uint32',
  Reserved: 'uint32',
});

const structs = Object.freeze({
  FS_CONNECT_CONTEXT,
  FS_COMMAND_HEADER,
  FS_STATS,
  FS_CONFIG,
  FS_OPEN_NOTIFICATION,
  FS_CONFIG_EVENT,
  FS_OPEN_REPLY,
});

function utf16(units, bytes) {
  return Buffer.from(units.buffer, units.byteOffset, units.byteLength).toString('utf16le', 0, bytes);
}

/** The connection context: `FilterPort.connect(PORT_NAME, { context: connectContext({ agent: true }) })`. */
function connectContext({ agent = false, magic = constants.FS_CONTEXT_MAGIC, version = constants.FS_PROTOCOL_VERSION } = {}) {
  const context = Buffer.alloc(koffi.sizeof(FS_CONNECT_CONTEXT));
  koffi.encode(context, FS_CONNECT_CONTEXT, { Magic: magic, Version: version, Flags: agent ? constants.FS_CONNECT_AGENT : 0, Reserved: 0 });
  return context;
}

/** A command's input buffer: FS_COMMAND_HEADER + payload. */
function command(code, payload = Buffer.alloc(0)) {
  const header = Buffer.alloc(koffi.sizeof(FS_COMMAND_HEADER));
  koffi.encode(header, FS_COMMAND_HEADER, { Command: code, PayloadBytes: payload.length });
  return Buffer.concat([header, payload]);
}

/** PING: resolves with the echoed bytes. */
function ping(port, payload) {
  return port.send(command(constants.FS_COMMAND_PING, payload), { replyBytes: payload.length });
}

/** GET_STATS: the driver's counters (numbers). */
function getStats(port) {
  return port.send(command(constants.FS_COMMAND_GET_STATS), { replyType: FS_STATS });
}

function encodeConfig({ enabled = true, replyTimeoutMs = constants.FS_DEFAULT_REPLY_TIMEOUT_MS, suffix = DEFAULT_SUFFIX }) {
  const suffixBytes = Buffer.from(suffix, 'utf16le');
  if (suffixBytes.length > constants.FS_MAX_SUFFIX_CHARS * 2) {
    throw new RangeError(`the suffix must be at most ${constants.FS_MAX_SUFFIX_CHARS} UTF-16 units`);
  }
  const units = new Uint16Array(constants.FS_MAX_SUFFIX_CHARS);
  units.set(new Uint16Array(suffixBytes.buffer, suffixBytes.byteOffset, suffixBytes.length / 2));
  const config = Buffer.alloc(koffi.sizeof(FS_CONFIG));
  koffi.encode(config, FS_CONFIG, {
    Flags: enabled ? constants.FS_CONFIG_ENABLED : 0,
    ReplyTimeoutMs: replyTimeoutMs,
    SuffixBytes: suffixBytes.length,
    Reserved: 0,
    Suffix: units,
  });
  return config;
}

function decodeConfig(raw) {
  return {
    enabled: (raw.Flags & constants.FS_CONFIG_ENABLED) !== 0,
    replyTimeoutMs: raw.ReplyTimeoutMs,
    suffix: utf16(raw.Suffix, Math.min(raw.SuffixBytes, constants.FS_MAX_SUFFIX_CHARS * 2)),
  };
}

/** SET_CONFIG: resolves with the configuration it replaced ({ enabled, replyTimeoutMs, suffix }). */
async function setConfig(port, config) {
  const previous = await port.send(command(constants.FS_COMMAND_SET_CONFIG, encodeConfig(config)), { replyType: FS_CONFIG });
  return decodeConfig(previous);
}

/**
 * A FilterMessage's payload as a plain object: { kind: 'open', sequence, processId, desiredAccess,
 * path, truncated } or { kind: 'config-changed', changeCount, config }. Throws on anything else,
 * which an agent should treat as a protocol mismatch.
 */
function decodeMessage(message) {
  const data = message.data;
  const kind = data.length >= 4 ? data.readUInt32LE(0) : 0;
  if (kind === constants.FS_MESSAGE_OPEN && data.length === koffi.sizeof(FS_OPEN_NOTIFICATION)) {
    const raw = koffi.decode(data, FS_OPEN_NOTIFICATION);
    return {
      kind: 'open',
      sequence: raw.Sequence,
      processId: raw.ProcessId,
      desiredAccess: raw.DesiredAccess,
      path: utf16(raw.Path, Math.min(raw.PathBytes, constants.FS_MAX_PATH_CHARS * 2)),
      truncated: (raw.PathFlags & constants.FS_PATH_TRUNCATED) !== 0,
    };
  }
  if (kind === constants.FS_MESSAGE_CONFIG_CHANGED && data.length === koffi.sizeof(FS_CONFIG_EVENT)) {
    const raw = koffi.decode(data, FS_CONFIG_EVENT);
    return { kind: 'config-changed', changeCount: raw.ChangeCount, config: decodeConfig(raw.Config) };
  }
  throw new Error(`unexpected message: kind ${kind}, ${data.length} bytes`);
}

/** Answers an open notification: message.reply(...) with exactly FILTER_REPLY_HEADER + FS_OPEN_REPLY. */
function replyVerdict(message, sequence, allow) {
  const verdict = allow ? constants.FS_VERDICT_ALLOW : constants.FS_VERDICT_DENY;
  return message.reply({ Sequence: sequence, Verdict: verdict, Reserved: 0 }, { type: FS_OPEN_REPLY });
}

module.exports = {
  PORT_NAME,
  DEFAULT_SUFFIX,
  constants,
  structs,
  connectContext,
  command,
  ping,
  getStats,
  setConfig,
  encodeConfig,
  decodeMessage,
  replyVerdict,
};
