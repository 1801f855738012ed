// Which Nix errors stall a build at once (the flake must change) and which are retried, for the wording of
// Nix 2.8 (the tests' host daemon) and Nix 2.26 (the builder image's client, which evaluates the flake).
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { permanentNixError } from '../../src/build/nix-errors.ts';

const src = '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-source';

it('evaluation errors of the flake itself are permanent, in the words of Nix 2.8 and 2.26', () => {
  const permanent = [
    `error: flake 'git+http://10.0.0.1/app.git?rev=abc' does not provide attribute 'packages.x86_64-linux.imag', 'legacyPackages.x86_64-linux.imag' or 'imag'`,
    `error: undefined variable 'pkgz'`,
    `error: syntax error, unexpected '}'`,
    `error: value is a string while a set was expected`, // 2.8
    `error: expected a set but found a string: "hello"`, // 2.26
    `error: expected an integer but found a list: [ ]`, // 2.26
    `error: getting status of '${src}/missing.nix': No such file or directory`, // 2.8
    `error: opening file '${src}/missing.nix': No such file or directory`, // 2.26
    `error: path '${src}/missing.nix' does not exist`, // 2.26
  ];
  for (const line of permanent)
    assert.equal(permanentNixError(`building...\n       … while evaluating\n${line}\n`), line, line);
});

it('failures a retry may fix are not: a builder that failed, a download, a missing path outside the flake', () => {
  const transient = [
    `error: builder for '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-app.drv' failed with exit code 3`,
    `error: unable to download 'https://cache.nixos.org/nar/x.nar.xz': Couldn't resolve host name (6)`,
    `error: path '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-glibc-2.40' does not exist`,
    `error: opening file '/nix/var/nix/db/db.sqlite': No such file or directory`,
    `error: cannot connect to socket at '/nix/var/nix/daemon-socket/socket': Connection refused`,
  ];
  for (const line of transient) assert.equal(permanentNixError(line), undefined, line);
});
