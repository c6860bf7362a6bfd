#!/usr/bin/env node
/**
 * The package's command line: `npx zenovay-express inspect [--port N]` starts a local collector
 * with the live inspector page, for development. Nothing leaves the machine: point an app's
 * `host` option at the URL it prints and watch what the app sends.
 */
import type { RecordedEvent } from './testing/collector.js';
import { createInspector, type Inspector } from './testing/inspector.js';

const DEFAULT_PORT = 7070;
const NAME = 'zenovay-express';

const USAGE = `Usage: npx ${NAME} inspect [--port N]

  inspect     Start a local collector on 127.0.0.1 with a live page of the pageviews and
              events your app sends. Point the app's \`host\` option at the URL it prints.
  --port N    Listen on port N (default ${DEFAULT_PORT}; 0 picks a free port).
  --help      Show this help.

Development only: it refuses to start when NODE_ENV is 'production'.
`;

type Command = { command: 'help' } | { command: 'inspect'; port: number } | { error: string };

/** Reads `inspect [--port N | --port=N | -p N]` and `--help`. */
function parseArgs(argv: readonly string[]): Command {
  if (argv.length === 0 || argv.some((arg) => arg === '--help' || arg === '-h')) {
    return { command: 'help' };
  }
  const [command, ...rest] = argv;
  if (command !== 'inspect') return { error: `Unknown command ${JSON.stringify(command)}.` };
  let port = DEFAULT_PORT;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    let value: string | undefined;
    if (arg === '--port' || arg === '-p') value = rest[++i];
    else if (arg.startsWith('--port=')) value = arg.slice('--port='.length);
    else return { error: `Unknown option ${JSON.stringify(arg)}.` };
    const number = Number(value);
    if (value === undefined || value === '' || !Number.isInteger(number) || number < 0) {
      return { error: `--port needs a whole number from 0 to 65535, got ${String(value)}.` };
    }
    if (number > 65535) {
      return { error: `--port needs a whole number from 0 to 65535, got ${value}.` };
    }
    port = number;
  }
  return { command: 'inspect', port };
}

async function main(argv: readonly string[]): Promise<void> {
  const parsed = parseArgs(argv);
  if ('error' in parsed) {
    process.stderr.write(`${parsed.error}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (parsed.command === 'help') {
    process.stdout.write(USAGE);
    return;
  }

  let inspector: Inspector;
  try {
    inspector = await createInspector({
      port: parsed.port,
      onEvent: (event) => console.log(formatEvent(event)),
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message =
      code === 'EADDRINUSE'
        ? `Port ${parsed.port} is already in use on 127.0.0.1. Pick another one: ` +
          `npx ${NAME} inspect --port ${parsed.port === 65535 ? 0 : parsed.port + 1}`
        : error instanceof Error
          ? error.message
          : String(error);
    process.stderr.write(`${message}\n`);
    process.exitCode = 1;
    return;
  }

  console.log(
    [
      '',
      '  Zenovay inspector: a local collector for development. Nothing leaves this machine.',
      '',
      `  Point your app at it:  host: '${inspector.url}'`,
      `                         e.g. analytics({ trackingCode: 'dev', host: '${inspector.url}' })`,
      `  Watch events live:     ${inspector.pageUrl}`,
      '',
      '  Events are also printed below. Ctrl-C stops.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = () => {
    if (stopping) {
      // A second Ctrl-C: do not wait any longer.
      process.exit(130);
    }
    stopping = true;
    const { recorded, requests } = inspector.state().totals;
    // Should something hold the process past close(), do not hang the terminal.
    setTimeout(() => {
      process.stderr.write('The inspector did not close within 3 s; exiting anyway.\n');
      process.exit(1);
    }, 3000).unref();
    void inspector.close().then(() => {
      console.log(`\n  Stopped: ${recorded} event(s) recorded from ${requests} request(s).`);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/** One line per event, e.g. `12:03:04  pageview  https://shop.example/  ip=203.0.113.9  ua=…`. */
function formatEvent(event: RecordedEvent): string {
  const time = new Date(event.receivedAt).toTimeString().slice(0, 8);
  const parts = [time];
  if (event.type === 'pageview') {
    parts.push('pageview', printable(event.url ?? '(no url)', 300));
  } else {
    parts.push(`event ${printable(event.name ?? '(no name)', 100)}`);
    if (event.data !== undefined) parts.push(printable(JSON.stringify(event.data), 200));
    if (event.url !== undefined) parts.push(`url=${printable(event.url, 300)}`);
  }
  const { 'x-forwarded-for': ip, 'user-agent': userAgent } = event.headers;
  if (event.referrer !== undefined) parts.push(`ref=${printable(event.referrer, 200)}`);
  if (ip !== undefined) parts.push(`ip=${printable(String(ip), 60)}`);
  if (userAgent !== undefined) parts.push(`ua=${printable(String(userAgent), 50)}`);
  return parts.join('  ');
}

/**
 * Visitor-controlled text made safe for a terminal (no control characters, so no escape
 * sequences) and cut to `max` characters.
 */
function printable(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max - 1)}…`;
}

void main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
