// Structured logs: one JSON object per line with a time, a level, the message, and the identity of what it
// is about (nixbuild, pod, source, ...), so that a log pipeline can filter by object. Text that came from
// someone else (manifests, build logs) has its control characters escaped before it is written.
import { printable } from '../text/printable.ts';

export type Level = 'debug' | 'info' | 'warn' | 'error';
export type Fields = Record<string, string | number | boolean | undefined>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** A logger whose every line carries these fields too. */
  with(fields: Fields): Logger;
  /** The same logger as a plain `(message) => void` (info), for code that takes one. */
  line: (msg: string) => void;
}

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** JSON lines into `sink` (stdout in production, an array in tests), from `minLevel` up. */
export function jsonLogger(
  sink: (line: string) => void,
  o: { minLevel?: Level; fields?: Fields; clock?: () => Date } = {},
): Logger {
  const min = ORDER[o.minLevel ?? 'info'];
  const clock = o.clock ?? (() => new Date());
  const make = (base: Fields): Logger => {
    const write =
      (level: Level) =>
      (msg: string, fields: Fields = {}) => {
        if (ORDER[level] < min) return;
        const entry: Record<string, unknown> = { time: clock().toISOString(), level, msg: printable(msg) };
        for (const [k, v] of Object.entries({ ...base, ...fields }))
          if (v !== undefined) entry[k] = typeof v === 'string' ? printable(v) : v;
        sink(JSON.stringify(entry));
      };
    const info = write('info');
    return {
      debug: write('debug'),
      info,
      warn: write('warn'),
      error: write('error'),
      with: (f) => make({ ...base, ...f }),
      line: (m) => info(m),
    };
  };
  return make(o.fields ?? {});
}
