// Which Nix failures no retry can fix: the flake as it is cannot be evaluated (a missing attribute, a syntax
// error, an undefined variable, a type error, a file of the flake that is not there), as Nix 2.8 and 2.26 word them. Those stall a build at once with Nix's own error line; anything
// else (a builder that failed, a download, a lost node) is retried with backoff. Pure.

const PERMANENT: readonly RegExp[] = [
  /error: flake '[^']*' does not provide attribute '[^']*'/,
  /error: attribute '[^']*' missing/,
  /error: undefined variable '[^']*'/,
  /error: syntax error/,
  /error: infinite recursion encountered/,
  /error: value is [^,]+ while a [^ ]+ was expected/,
  /error: cannot coerce /,
  /error: getting status of '[^']*': No such file or directory/,
  // Nix 2.26 (the builder image's) words type errors and missing files of the flake differently.
  /error: expected an? [a-z ]+ but found an? [a-z ]+/,
  /error: opening file '\/nix\/store\/[a-z0-9]{32}-source\/[^']*': No such file or directory/,
  /error: path '\/nix\/store\/[a-z0-9]{32}-source\/[^']*' does not exist/,
];

/** Nix's error line when the log shows a failure that needs a change to the flake or the NixBuild. */
export function permanentNixError(log: string): string | undefined {
  for (const line of log.split('\n')) {
    const at = line.indexOf('error: ');
    if (at < 0) continue;
    const text = line.slice(at).trim();
    if (PERMANENT.some((re) => re.test(text))) return text.slice(0, 400);
  }
  return undefined;
}
