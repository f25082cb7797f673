// The fltport command line: its commands, their options and help, and argument parsing. Knows
// nothing of Windows, so that bad arguments are reported the same everywhere.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { MAX_PAYLOAD_BYTES } from '../validate';

/** Exit codes a script can test. */
export const EXIT = {
  ok: 0,
  /** A Windows call failed (the message names it and its code); listen: the kernel side disconnected. */
  failed: 1,
  /** Bad arguments. */
  usage: 2,
  /** Not on Windows, or the native addon could not load. */
  unsupported: 3,
  /** probe, listen, send: no such port (ERROR_FILE_NOT_FOUND). */
  portNotFound: 4,
  /** probe, listen, send: access denied (the port's security descriptor, or ConnectNotify refused with STATUS_ACCESS_DENIED). */
  accessDenied: 5,
  /** probe, listen, send: the port's MaxConnections is reached (ERROR_CONNECTION_COUNT_LIMIT). */
  countLimit: 6,
} as const;

type OptionKind = 'string' | 'boolean';

interface OptionSpec {
  type: OptionKind;
  help: string;
  /** How the value is shown in help (HEX, N, ...). */
  value?: string;
  /** Turns the text into the value the command takes; throws a UsageError for a bad one. */
  convert?: (text: string, flag: string) => unknown;
}

interface CommandSpec {
  /** Positional arguments: NAME (required) or [NAME] (optional). */
  usage: string;
  summary: string;
  options: Record<string, OptionSpec>;
  positionals: { required: number; optional: number };
  admin?: boolean;
  /** Checks across options and positionals; may add converted values to `options`. */
  check?: (positionals: string[], options: Record<string, unknown>) => void;
}

/** An integer option from `min` to `max`. */
const integer = (min: number, max: number) => (text: string, flag: string): number => {
  const number = Number(text);
  if (!/^\d+$/.test(text) || number < min || number > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, not '${text}'`);
  return number;
};

/** Hex bytes: "0a1b2c", "0a 1b 2c", "0x0a1b". */
export function hexBytes(text: string, flag: string): Buffer {
  const digits = text.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(digits)) throw new UsageError(`${flag} must be hex bytes such as 0a1b2c, not '${text}'`);
  return Buffer.from(digits, 'hex');
}

const altitude = (text: string, flag: string): string => {
  if (!/^\d+(\.\d+)?$/.test(text)) throw new UsageError(`${flag} must be a decimal altitude such as 385100 or 370030.5, not '${text}'`);
  return text;
};

const json: OptionSpec = { type: 'boolean', help: 'print JSON instead of a table' };
const context: OptionSpec = { type: 'string', value: 'HEX', help: 'connection context passed to ConnectNotify, as hex bytes', convert: hexBytes };

export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  filters: { usage: '', summary: 'list the loaded filters (FilterFindFirst/Next), like fltmc filters', options: { json }, positionals: { required: 0, optional: 0 } },
  instances: {
    usage: '[FILTER]',
    summary: "list a filter's instances, or the instances on every volume",
    options: { json },
    positionals: { required: 0, optional: 1 },
  },
  volumes: { usage: '', summary: 'list the volumes the filter manager knows, with their DOS names', options: { json }, positionals: { required: 0, optional: 0 } },
  load: { usage: 'FILTER', summary: 'load a minifilter by its service name (FilterLoad)', options: { json }, positionals: { required: 1, optional: 0 }, admin: true },
  unload: { usage: 'FILTER', summary: 'unload a minifilter (FilterUnload)', options: { json }, positionals: { required: 1, optional: 0 }, admin: true },
  attach: {
    usage: 'FILTER VOLUME',
    summary: 'attach an instance of a filter to a volume (FilterAttach / FilterAttachAtAltitude)',
    options: {
      altitude: { type: 'string', value: 'A', help: 'attach at this altitude, e.g. 385100', convert: altitude },
      instance: { type: 'string', value: 'NAME', help: 'name of the instance to create' },
      json,
    },
    positionals: { required: 2, optional: 0 },
    admin: true,
  },
  detach: {
    usage: 'FILTER VOLUME',
    summary: 'detach an instance of a filter from a volume (FilterDetach)',
    options: { instance: { type: 'string', value: 'NAME', help: "the instance to detach (default: the filter's default instance)" }, json },
    positionals: { required: 2, optional: 0 },
    admin: true,
  },
  probe: {
    usage: 'PORT',
    summary: 'connect to a communication port and report the outcome with its code',
    options: { context, json },
    positionals: { required: 1, optional: 0 },
  },
  listen: {
    usage: 'PORT',
    summary: 'connect and print each message as it comes; Ctrl+C prints a summary',
    options: {
      context,
      pending: { type: 'string', value: 'N', help: 'reads kept outstanding in the kernel (default 16)', convert: integer(1, 1024) },
      reply: { type: 'string', value: 'HEX', help: 'reply to each message that expects one with these bytes (cut to what it can take)', convert: hexBytes },
      'reply-bytes': { type: 'string', value: 'N', help: 'reply to each message that expects one with N zero bytes (cut likewise)', convert: integer(0, MAX_PAYLOAD_BYTES) },
      count: { type: 'string', value: 'N', help: 'stop after N messages', convert: integer(1, Number.MAX_SAFE_INTEGER) },
      json: { type: 'boolean', help: 'print one JSON object per message, then one for the summary' },
    },
    positionals: { required: 1, optional: 0 },
    check: (_positionals, options) => {
      if (options.reply !== undefined && options['reply-bytes'] !== undefined) throw new UsageError('give --reply or --reply-bytes, not both');
    },
  },
  send: {
    usage: 'PORT HEX|@FILE',
    summary: 'send one message (FilterSendMessage) and print the reply',
    options: {
      context,
      'reply-bytes': { type: 'string', value: 'N', help: 'size of the reply buffer (default 4096)', convert: integer(0, MAX_PAYLOAD_BYTES) },
      json,
    },
    positionals: { required: 2, optional: 0 },
    check: ([, data], options) => {
      options.payload = (data as string).startsWith('@') ? readPayload((data as string).slice(1)) : hexBytes(data as string, 'the message');
    },
  },
};

const READ_CHUNK_BYTES = 1024 * 1024;

const tooLarge = (file: string, size: string) =>
  new UsageError(`${file} is ${size}: a message is at most ${MAX_PAYLOAD_BYTES} bytes (64 MiB, the most fltport sends through FilterSendMessage)`);

/**
 * The message in `file`. Larger than MAX_PAYLOAD_BYTES (FilterPort.send's limit) it is refused
 * from its size, or, for what has none (a pipe, a device), after reading one byte more: never
 * read whole.
 */
function readPayload(file: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  }
  try {
    const stat = fs.fstatSync(fd);
    if (stat.isFile() && stat.size > MAX_PAYLOAD_BYTES) throw tooLarge(file, `${stat.size} bytes`);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(READ_CHUNK_BYTES);
      const read = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) return Buffer.concat(chunks, total);
      total += read;
      if (total > MAX_PAYLOAD_BYTES) throw tooLarge(file, `more than ${MAX_PAYLOAD_BYTES} bytes`);
      chunks.push(chunk.subarray(0, read));
    }
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}`);
  } finally {
    fs.closeSync(fd);
  }
}

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ParsedCommand {
  command: string;
  positionals: string[];
  /** Option values as each option's convert() made them (Buffers, numbers), booleans, strings. */
  options: Record<string, unknown>;
  help: boolean;
}

/** Parses argv (without node and the script); `command` is 'help' for fltport --help and fltport help. */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    return { command: rest[0] !== undefined && command === 'help' ? rest[0] : 'help', positionals: [], options: {}, help: true };
  }
  const spec = COMMANDS[command];
  if (spec === undefined || !Object.prototype.hasOwnProperty.call(COMMANDS, command)) {
    throw new UsageError(`unknown command '${command}'`);
  }
  const types = Object.fromEntries(Object.entries(spec.options).map(([name, { type }]) => [name, { type }]));
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options: { ...types, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message, command);
  }
  const { help, ...values } = parsed.values as Record<string, string | boolean | undefined>;
  if (help === true) return { command, positionals: [], options: {}, help: true };
  const { required, optional } = spec.positionals;
  if (parsed.positionals.length < required) throw new UsageError(`${command} needs ${spec.usage}`, command);
  if (parsed.positionals.length > required + optional) {
    throw new UsageError(`unexpected argument '${parsed.positionals[required + optional]}'`, command);
  }
  const options: Record<string, unknown> = {};
  try {
    for (const [name, value] of Object.entries(values)) {
      const convert = spec.options[name]?.convert;
      options[name] = convert !== undefined && typeof value === 'string' ? convert(value, `--${name}`) : value;
    }
    spec.check?.(parsed.positionals, options);
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(error.message, command);
    throw error;
  }
  return { command, positionals: parsed.positionals, options, help: false };
}

const EXIT_HELP = `Exit codes:
  0  success
  1  a Windows call failed (the message names the call and its code); listen: the kernel side disconnected
  2  bad arguments
  3  not on Windows, or the native addon could not load
  4  probe, listen, send: no such port
  5  probe, listen, send: access denied (security descriptor or ConnectNotify)
  6  probe, listen, send: the port's connection limit is reached`;

export function helpText(command = 'help'): string {
  const spec = COMMANDS[command];
  if (command === 'help' || spec === undefined) {
    const lines = Object.entries(COMMANDS).map(([name, { usage, summary, admin }]) => `  ${`${name} ${usage}`.padEnd(26)}${summary}${admin ? ' [administrator]' : ''}`);
    return `Usage: fltport COMMAND [ARGUMENTS] [OPTIONS]\n\nCommands:\n${lines.join('\n')}\n\nRun fltport COMMAND --help for a command's options.\n\n${EXIT_HELP}\n`;
  }
  const options = Object.entries(spec.options).map(([name, { value, help }]) => `  ${`--${name}${value ? ` ${value}` : ''}`.padEnd(22)}${help}`);
  options.push(`  ${'--help'.padEnd(22)}this help`);
  const admin = spec.admin ? '\nNeeds an elevated administrator (SeLoadDriverPrivilege for load/unload).\n' : '';
  return `Usage: fltport ${command}${spec.usage ? ` ${spec.usage}` : ''} [OPTIONS]\n\n${spec.summary}.\n${admin}\nOptions:\n${options.join('\n')}\n\n${EXIT_HELP}\n`;
}
