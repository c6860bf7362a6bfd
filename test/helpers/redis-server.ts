/**
 * Real redis-server processes for tests (Debian's `redis-server`; `.ci/run` installs it): each
 * one on a free port of its own, in a temporary directory, without persistence unless asked.
 * `stopAllRedis()` (call it in afterAll) stops every server still running and removes the
 * directories this helper made.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface RedisProcess {
  port: number;
  /** `redis://127.0.0.1:PORT` */
  url: string;
  /** Where it keeps its files (the AOF with `appendonly`). */
  dir: string;
  child: ChildProcess;
}

export interface StartRedisOptions {
  /** Default: a free port. Pass a stopped server's port (and `dir`) to start it again. */
  port?: number;
  /** Default: a new temporary directory (removed by stopAllRedis). */
  dir?: string;
  /** AOF with `appendfsync always`: every acknowledged write survives a SIGKILL. */
  appendonly?: boolean;
}

const running = new Set<RedisProcess>();
const madeDirs: string[] = [];

/** Throws a message that says how to get redis-server when it is not on the PATH. */
export function requireRedisServer(): void {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    throw new Error(
      'These tests need a real redis-server on the PATH: `apt-get install redis-server` (.ci/run installs it).',
    );
  }
}

/** A port nothing listens on right now (127.0.0.1). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Starts a redis-server and resolves once it accepts connections. */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisProcess> {
  const port = options.port ?? (await freePort());
  let dir = options.dir;
  if (dir === undefined) {
    dir = mkdtempSync(path.join(os.tmpdir(), 'zenovay-redis-'));
    madeDirs.push(dir);
  }
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push(
    ...(options.appendonly
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no']),
  );
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const server: RedisProcess = { port, url: `redis://127.0.0.1:${port}`, dir, child };
  running.add(server);
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start: ${seen}`)),
      10_000,
    );
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}): ${seen}`));
    };
    child.once('error', reject);
    child.once('exit', onExit);
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve();
      }
    });
  });
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  child.stderr?.resume();
  return server;
}

/** Stops a server (SIGKILL by default: with `appendonly` nothing acknowledged is lost). */
export async function stopRedis(
  server: RedisProcess,
  signal: NodeJS.Signals = 'SIGKILL',
): Promise<void> {
  running.delete(server);
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    server.child.once('exit', () => resolve());
    server.child.kill(signal);
  });
}

/** Stops every server still running and removes the directories made for them. */
export async function stopAllRedis(): Promise<void> {
  await Promise.all([...running].map((server) => stopRedis(server)));
  for (const dir of madeDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
