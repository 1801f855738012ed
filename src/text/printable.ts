// Text that came from someone else (a build log, a manifest, a pod's message) made safe to print: control
// characters other than newline and tab are shown as \xNN (or \u{…}) escapes, so that a build cannot move a
// terminal's cursor, rewrite earlier lines, or hide text in a log viewer.

// C0 controls but \t and \n, DEL, C1 controls, and the bidirectional overrides that reorder what is shown.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}
