/**
 * Bench scripts run in processes of their own (bench/run.mjs, bench/main-thread-turns.mjs): one
 * that serves until stopped (an app, the endpoint stand-in), or one that runs to its end and
 * prints its figures. Whatever ends the calling process ends the servers it started.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

/**
 * Starts a bench script that serves (it prints {"port":N} when ready); resolves with its URL and
 * `stop()`, which sends SIGTERM and waits for it to exit.
 */
export function start(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        const { port } = JSON.parse(line);
        resolve({
          url: `http://127.0.0.1:${port}`,
          stop: () =>
            new Promise((r) => {
              child.once('exit', r);
              child.kill('SIGTERM');
              children.delete(child);
            }),
        });
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`${script} exited with ${code} before it was ready`)),
    );
  });
}

/** Runs a bench script to its end and returns what it printed. */
export async function runText(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}`);
  return out;
}

/** Runs a bench script to its end and parses the JSON line it prints. */
export async function runScript(script, args) {
  return JSON.parse(await runText(script, args));
}
