/**
 * The injectable logger, and the reporter that keeps the same problem from flooding it.
 */

/** Where zenovay-express reports what it does. Every method is optional. */
export interface Logger {
  debug?(message: string): void;
  info?(message: string): void;
  warn?(message: string): void;
  error?(message: string): void;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
/** The levels of coded, throttled reports. */
export type ReportLevel = Exclude<LogLevel, 'debug'>;

/** Info, warnings and errors to the console; debug lines are dropped. */
export const consoleLogger: Logger = {
  info: (message) => console.info(message),
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
};

/** An error's message for a log line (anything thrown, not only Errors). */
export function errorText(error: unknown): string {
  return (error as Error | null | undefined)?.message ?? String(error);
}

/** How long the same problem (same code) stays quiet after it was reported. */
export const REPEAT_INTERVAL_MS = 60_000;

/**
 * Reports through a {@link Logger}. Warnings and errors carry a stable code (`ZENOVAY_*`); each code is
 * reported at most once per {@link REPEAT_INTERVAL_MS} (its first message stands for the rest); debug lines are not throttled
 * but cost nothing when the logger has no `debug`.
 */
export class Reporter {
  private readonly lastReported = new Map<string, number>();
  /** True when the logger listens to debug lines: callers test it before building a message. */
  readonly debugEnabled: boolean;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.debugEnabled = typeof logger.debug === 'function';
  }

  debug(message: string): void {
    this.call('debug', `[zenovay] ${message}`);
  }

  info(code: string, message: string): void {
    this.throttled('info', code, message);
  }

  warn(code: string, message: string): void {
    this.throttled('warn', code, message);
  }

  error(code: string, message: string): void {
    this.throttled('error', code, message);
  }

  private throttled(level: ReportLevel, code: string, message: string): void {
    const now = this.now();
    const last = this.lastReported.get(code);
    if (last !== undefined && now - last < REPEAT_INTERVAL_MS) return;
    if (this.lastReported.size >= 1000) this.lastReported.clear();
    this.lastReported.set(code, now);
    this.write(level, code, message);
  }

  /** Where a report that passed the throttle goes: the logger (the delivery worker forwards it). */
  protected write(level: ReportLevel, code: string, message: string): void {
    this.call(level, `[zenovay] ${code}: ${message}`);
  }

  private call(level: LogLevel, line: string): void {
    try {
      this.logger[level]?.(line);
    } catch {
      // A throwing logger must not break the request or the delivery of events.
    }
  }
}
