#!/usr/bin/env node
// fltport COMMAND ...: the filter manager and communication ports from a terminal. See
// `fltport --help` and README.md; exit codes in args.ts (EXIT).
import { FltportError, WinError } from '../errors';
import { FilterPort } from '../filter-port';
import { attach, detach, listFilters, listInstances, listVolumes, loadFilter, unloadFilter } from '../filter-manager';
import type { FilterMessage } from '../filter-message';
import { EXIT, UsageError, helpText, parseCommandLine } from './args';
import type { ParsedCommand } from './args';
import { hexPreview, table, utf16Preview } from './format';

type Options = ParsedCommand['options'];

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const printJson = (value: unknown) => print(JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
const dash = (value: string | number | null) => (value === null || value === '' ? '-' : String(value));

/** FilterPort.connect's options from --context. */
const connectOptions = (options: Options) => (options.context === undefined ? {} : { context: options.context as Buffer });

async function filters(options: Options): Promise<number> {
  const list = await listFilters();
  if (options.json) printJson(list);
  else {
    print(table(list, [
      { header: 'Filter Name', value: (f) => f.name },
      { header: 'Num Instances', value: (f) => dash(f.instances), right: true },
      { header: 'Altitude', value: (f) => dash(f.altitude), right: true },
      { header: 'Frame', value: (f) => (f.kind === 'legacy' ? '<Legacy>' : dash(f.frameId)), right: true },
    ]));
  }
  return EXIT.ok;
}

async function instances(options: Options, [filter]: string[]): Promise<number> {
  const list = await listInstances(filter);
  if (options.json) printJson(list);
  else {
    print(table(list, [
      { header: 'Filter', value: (i) => i.filterName },
      { header: 'Volume Name', value: (i) => i.volumeName },
      { header: 'Altitude', value: (i) => i.altitude, right: true },
      { header: 'Instance Name', value: (i) => dash(i.instanceName) },
      { header: 'Frame', value: (i) => (i.kind === 'legacy' ? '<Legacy>' : dash(i.frameId)), right: true },
      { header: 'SprtFtrs', value: (i) => (i.supportedFeatures === null ? '-' : `0x${i.supportedFeatures.toString(16).padStart(8, '0')}`) },
      { header: 'VlStatus', value: (i) => (i.detachedVolume ? 'Detached' : '') },
    ]));
  }
  return EXIT.ok;
}

async function volumes(options: Options): Promise<number> {
  const list = await listVolumes();
  if (options.json) printJson(list);
  else {
    print(table(list, [
      { header: 'Dos Name', value: (v) => v.dosName ?? '' },
      { header: 'Volume Name', value: (v) => v.name },
      { header: 'FileSystem', value: (v) => dash(v.fileSystem) },
      { header: 'Status', value: (v) => (v.detached ? 'Detached' : '') },
    ]));
  }
  return EXIT.ok;
}

async function loadOrUnload(command: 'load' | 'unload', options: Options, [filter]: string[]): Promise<number> {
  await (command === 'load' ? loadFilter : unloadFilter)(filter as string);
  if (options.json) printJson({ filter, [command === 'load' ? 'loaded' : 'unloaded']: true });
  else print(`${command === 'load' ? 'Loaded' : 'Unloaded'} ${filter}`);
  return EXIT.ok;
}

async function attachCommand(options: Options, [filter, volume]: string[]): Promise<number> {
  const attachOptions: { altitude?: string; instanceName?: string } = {};
  if (typeof options.altitude === 'string') attachOptions.altitude = options.altitude;
  if (typeof options.instance === 'string') attachOptions.instanceName = options.instance;
  const instanceName = await attach(filter as string, volume as string, attachOptions);
  if (options.json) printJson({ filter, volume, instanceName });
  else print(`Attached ${filter} to ${volume} as instance "${instanceName}"`);
  return EXIT.ok;
}

async function detachCommand(options: Options, [filter, volume]: string[]): Promise<number> {
  const instance = typeof options.instance === 'string' ? options.instance : undefined;
  await detach(filter as string, volume as string, instance);
  if (options.json) printJson({ filter, volume, instanceName: instance ?? null, detached: true });
  else print(`Detached ${filter}${instance ? ` instance "${instance}"` : ''} from ${volume}`);
  return EXIT.ok;
}

// What a failed connect means, for probe, listen and send.
const CONNECT_OUTCOMES: Record<string, { outcome: string; exit: number }> = {
  ERROR_FILE_NOT_FOUND: { outcome: 'not found', exit: EXIT.portNotFound },
  ERROR_ACCESS_DENIED: { outcome: 'access denied (the port\'s security descriptor, or ConnectNotify refused)', exit: EXIT.accessDenied },
  ERROR_CONNECTION_COUNT_LIMIT: { outcome: 'connection limit reached', exit: EXIT.countLimit },
};

async function probe(options: Options, [name]: string[]): Promise<number> {
  try {
    const port = await FilterPort.connect(name as string, connectOptions(options));
    await port.close();
  } catch (error) {
    if (!(error instanceof WinError)) throw error;
    const known = CONNECT_OUTCOMES[error.code] ?? { outcome: 'refused', exit: EXIT.failed };
    const code = `0x${(error.hresult ?? 0).toString(16).toUpperCase().padStart(8, '0')}`;
    if (options.json) printJson({ port: name, ok: false, outcome: known.outcome, code: error.code, hresult: code, message: error.message });
    else print(`${name}: ${known.outcome}: ${error.code} (${code})${error.systemMessage ? ` ${error.systemMessage}` : ''}`);
    return known.exit;
  }
  if (options.json) printJson({ port: name, ok: true, outcome: 'ok' });
  else print(`${name}: ok (connected and closed)`);
  return EXIT.ok;
}

async function listen(options: Options, [name]: string[]): Promise<number> {
  const pending = (options.pending as number | undefined) ?? 16;
  const count = options.count as number | undefined;
  const reply = (options.reply as Buffer | undefined) ?? Buffer.alloc((options['reply-bytes'] as number | undefined) ?? 0);

  const port = await FilterPort.connect(name as string, connectOptions(options));
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  let seen = 0;
  const show = (message: FilterMessage) => {
    seen += 1;
    if (options.json) {
      printJson({ id: message.id, bytes: message.data.length, expectsReply: message.expectsReply, replyBytes: message.replyBytes, hex: message.data.toString('hex') });
    } else {
      print(`#${message.id} ${message.data.length} bytes${message.expectsReply ? `, reply up to ${message.replyBytes}` : ', no reply'}\n  hex:    ${hexPreview(message.data)}\n  utf-16: ${utf16Preview(message.data)}`);
    }
    if (count !== undefined && seen >= count) stop.abort();
    // The reply, cut to what the kernel can take.
    return message.expectsReply ? reply.subarray(0, message.replyBytes) : undefined;
  };
  try {
    const stats = await port.serve(show, { pending, signal: stop.signal, onError: (error) => process.stderr.write(`fltport: ${(error as Error).message}\n`) });
    if (options.json) printJson({ summary: stats });
    else print(`${stats.received} messages, ${stats.replied} replies, ${stats.lateReplies} late, ${stats.unsentReplies} unsent, ${stats.failed} failed`);
  } catch (error) {
    // serve() rejects with the WinError when the kernel side disconnects (driver unloaded,
    // FltCloseClientPort): a listener that stops unasked is a failure a script must see.
    if (!(error instanceof WinError) || !port.closed) throw error;
    if (options.json) printJson({ summary: { received: seen }, disconnected: true });
    else print(`${seen} messages before the kernel side disconnected`);
    process.stderr.write(`fltport: the kernel side disconnected: ${error.message}\n`);
    return EXIT.failed;
  } finally {
    process.off('SIGINT', onSignal);
    await port.close();
  }
  return EXIT.ok;
}

async function send(options: Options, [name]: string[]): Promise<number> {
  const replyBytes = (options['reply-bytes'] as number | undefined) ?? 4096;
  const payload = options.payload as Buffer;
  const port = await FilterPort.connect(name as string, connectOptions(options));
  try {
    const answer = (await port.send(payload, { replyBytes })) as Buffer;
    if (options.json) printJson({ port: name, sent: payload.length, replyBytes: answer.length, hex: answer.toString('hex') });
    else print(`sent ${payload.length} bytes, reply ${answer.length} bytes\n  hex:    ${hexPreview(answer)}\n  utf-16: ${utf16Preview(answer)}`);
  } finally {
    await port.close();
  }
  return EXIT.ok;
}

const RUN: Record<string, (options: Options, positionals: string[], command: string) => Promise<number>> = {
  filters,
  instances,
  volumes,
  load: (options, positionals) => loadOrUnload('load', options, positionals),
  unload: (options, positionals) => loadOrUnload('unload', options, positionals),
  attach: attachCommand,
  detach: detachCommand,
  probe,
  listen,
  send,
};

const PRIVILEGE_HINT = /ERROR_PRIVILEGE_NOT_HELD|ERROR_ACCESS_DENIED/;

/** Runs one command line; resolves with the exit code. Errors are printed without a stack. */
export async function main(argv: readonly string[]): Promise<number> {
  let parsed: ParsedCommand;
  try {
    parsed = parseCommandLine(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`fltport: ${error.message}\nRun 'fltport ${error.command ? `${error.command} ` : ''}--help' for usage.\n`);
    return EXIT.usage;
  }
  if (parsed.help) {
    print(helpText(parsed.command));
    return EXIT.ok;
  }
  if (process.platform !== 'win32') {
    process.stderr.write(`fltport: needs Windows: it talks to the Windows filter manager and its ports (this is ${process.platform})\n`);
    return EXIT.unsupported;
  }
  try {
    return await (RUN[parsed.command] as (typeof RUN)[string])(parsed.options, parsed.positionals, parsed.command);
  } catch (error) {
    if (error instanceof FltportError && (error.code === 'ERR_FLTPORT_NATIVE_LOAD' || error.code === 'ERR_FLTPORT_UNSUPPORTED_PLATFORM')) {
      process.stderr.write(`fltport: ${error.message}\n`);
      return EXIT.unsupported;
    }
    // A name the API refuses (too long, with NUL): an argument error like the ones above.
    const code = (error as { code?: unknown })?.code;
    if ((error instanceof TypeError || error instanceof RangeError) && typeof code === 'string' && /^ERR_(INVALID_ARG|OUT_OF_RANGE)/.test(code)) {
      process.stderr.write(`fltport: ${error.message}\nRun 'fltport ${parsed.command} --help' for usage.\n`);
      return EXIT.usage;
    }
    if (error instanceof WinError) {
      // listen and send fail to connect with probe's exit codes.
      const connectExit = error.syscall === 'FilterConnectCommunicationPort' ? CONNECT_OUTCOMES[error.code]?.exit : undefined;
      const hint = PRIVILEGE_HINT.test(error.code) && (parsed.command === 'load' || parsed.command === 'unload' || parsed.command === 'attach' || parsed.command === 'detach')
        ? '\n(this needs an elevated administrator prompt)'
        : '';
      process.stderr.write(`fltport: ${error.message}${hint}\n`);
      return connectExit ?? EXIT.failed;
    }
    process.stderr.write(`fltport: ${(error as Error)?.message ?? String(error)}\n`);
    return EXIT.failed;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`fltport: ${(error as Error)?.message ?? String(error)}\n`);
      process.exitCode = EXIT.failed;
    },
  );
}
