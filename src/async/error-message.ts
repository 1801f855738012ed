/** An error's message, whatever was thrown (an Error, a string, anything else). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
