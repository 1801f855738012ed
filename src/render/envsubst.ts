// Flux's postBuild.substitute: ${var}, ${var:=default} and ${var:-default} replaced in each rendered object's
// YAML (an unset variable without a default becomes empty, as Flux does without strict substitution), $${var}
// kept literally as ${var}; objects labelled or annotated kustomize.toolkit.fluxcd.io/substitute: disabled
// are left alone. Pure.

export const SUBSTITUTE_DISABLED = 'kustomize.toolkit.fluxcd.io/substitute';

const VAR = /\$(\$?)\{([_a-zA-Z][_a-zA-Z0-9]*)(?:(:?[=-])([^}]*))?\}/g;

export function substitute(text: string, vars: Readonly<Record<string, string>>): string {
  return text.replace(
    VAR,
    (whole, escaped: string, name: string, op: string | undefined, fallback: string | undefined) => {
      if (escaped === '$') return whole.slice(1);
      const value = vars[name];
      if (op === undefined) return value ?? '';
      // ":=" and ":-" also replace an empty value; "=" and "-" only an unset one.
      const useDefault = op.startsWith(':') ? value === undefined || value === '' : value === undefined;
      return useDefault ? (fallback ?? '') : value!;
    },
  );
}

export function substitutionDisabled(object: Record<string, unknown>): boolean {
  const metadata = object.metadata as
    { labels?: Record<string, unknown>; annotations?: Record<string, unknown> } | undefined;
  return (
    metadata?.labels?.[SUBSTITUTE_DISABLED] === 'disabled' ||
    metadata?.annotations?.[SUBSTITUTE_DISABLED] === 'disabled'
  );
}
