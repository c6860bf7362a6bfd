/**
 * Tiny terminal helpers for the example app: ANSI colours when stdout is a terminal (and
 * NO_COLOR is not set), plain text otherwise, so piping the output to a file stays readable.
 */

const useColor = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;

/** Wraps `text` in an ANSI style when colours are on. */
function style(open, close) {
  return (text) => (useColor ? `\u001b[${open}m${text}\u001b[${close}m` : String(text));
}

export const bold = style(1, 22);
export const dim = style(2, 22);
export const red = style(31, 39);
export const green = style(32, 39);
export const yellow = style(33, 39);
export const blue = style(34, 39);
export const magenta = style(35, 39);
export const cyan = style(36, 39);

/** `text` cut to `max` characters, with an ellipsis when it was longer. */
export function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
