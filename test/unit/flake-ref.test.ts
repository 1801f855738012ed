import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { expandAttr } from '../../src/flake/attr.ts';
import {
  type FlakeRef,
  flakeCredentials,
  FlakeRefError,
  formatFlakeRef,
  gitUrlOf,
  parseFlakeRef,
  redactFlakeUrl,
} from '../../src/flake/ref.ts';

const REV = '0123456789abcdef0123456789abcdef01234567';

test('github shorthand: owner, repo, rev in the path, dir and attribute', () => {
  const r = parseFlakeRef(`github:acme/shop/${REV}?dir=services/api#api-image`);
  assert.equal(r.type, 'github');
  assert.equal(r.owner, 'acme');
  assert.equal(r.repo, 'shop');
  assert.equal(r.rev, REV);
  assert.equal(r.ref, undefined);
  assert.equal(r.dir, 'services/api');
  assert.equal(r.attr, 'api-image');
  assert.equal(gitUrlOf(r), 'https://github.com/acme/shop.git');
});

test('github shorthand with a branch in the path is a ref, not a rev', () => {
  const r = parseFlakeRef('github:acme/shop/main');
  assert.equal(r.ref, 'main');
  assert.equal(r.rev, undefined);
  assert.equal(r.attr, undefined);
});

test('gitlab with host and URL-encoded subgroup', () => {
  const r = parseFlakeRef(`gitlab:group%2Fsub/app?host=git.example.org&rev=${REV}#img`);
  assert.equal(r.owner, 'group/sub');
  assert.equal(r.host, 'git.example.org');
  assert.equal(r.rev, REV);
  assert.equal(gitUrlOf(r), 'https://git.example.org/group/sub/app.git');
});

test('git+https, git+http and git+ssh keep their URL and read ref, rev and dir', () => {
  for (const scheme of ['https', 'http', 'ssh']) {
    const url = scheme === 'ssh' ? 'ssh://git@host.example/app.git' : `${scheme}://host.example:8080/app.git`;
    const r = parseFlakeRef(`git+${url}?ref=release/1&rev=${REV}&dir=nix#packages.x86_64-linux.img`);
    assert.equal(r.type, 'git');
    assert.equal(r.url, url);
    assert.equal(r.ref, 'release/1');
    assert.equal(r.rev, REV);
    assert.equal(r.dir, 'nix');
    assert.equal(r.attr, 'packages.x86_64-linux.img');
  }
});

test('indirect references name an input', () => {
  const r = parseFlakeRef('myapp#image');
  assert.equal(r.type, 'indirect');
  assert.equal(r.owner, 'myapp');
  assert.equal(parseFlakeRef('flake:myapp').owner, 'myapp');
});

test('bad references are rejected with a reason', () => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['github:acme', /OWNER\/REPO/],
    ['github:acme/shop?rev=abc123', /not a full 40-character/],
    ['git+https://host/app.git?dir=../x', /relative path/],
    ['svn:foo', /unsupported scheme/],
    ['https://host/app.git', /git\+https/],
    [`github:acme/shop/${REV}?rev=${REV.replace('0', '1')}`, /two different revisions/],
    ['github:acme/shop#', /empty attribute/],
    ['github:acme/shop?ref=a..b', /not a valid Git ref/],
  ];
  for (const [input, message] of cases)
    assert.throws(
      () => parseFlakeRef(input),
      (e: unknown) => e instanceof FlakeRefError && message.test(e.message),
      input,
    );
});

test('a short attribute expands to packages.<system>.<attr>; a full path must match the system', () => {
  assert.equal(expandAttr('image', 'aarch64-linux'), 'packages.aarch64-linux.image');
  assert.equal(expandAttr(undefined, 'x86_64-linux'), 'packages.x86_64-linux.default');
  assert.equal(
    expandAttr('myapp-docker.stream-layered', 'x86_64-linux'),
    'packages.x86_64-linux.myapp-docker.stream-layered',
  );
  assert.equal(expandAttr('packages.x86_64-linux.img', 'x86_64-linux'), 'packages.x86_64-linux.img');
  assert.throws(() => expandAttr('packages.x86_64-linux.img', 'aarch64-linux'), /not aarch64-linux/);
});

const segment = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/);
const rev = fc.stringMatching(/^[0-9a-f]{40}$/);
const branch = fc.stringMatching(/^[a-z][a-z0-9]{0,6}(\/[a-z0-9]{1,5})?$/);
const attr = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}(\.[a-z0-9-]{1,6})?$/);

const flakeRefArb: fc.Arbitrary<FlakeRef> = fc
  .record({
    type: fc.constantFrom('github', 'gitlab', 'git', 'indirect'),
    owner: segment,
    repo: segment,
    host: fc.option(fc.constantFrom('git.example.org', 'gh.internal'), { nil: undefined }),
    ref: fc.option(branch, { nil: undefined }),
    rev: fc.option(rev, { nil: undefined }),
    dir: fc.option(fc.stringMatching(/^[a-z]{1,5}(\/[a-z]{1,5})?$/), { nil: undefined }),
    attr: fc.option(attr, { nil: undefined }),
  })
  .map((g) => {
    const r: FlakeRef = { type: g.type as FlakeRef['type'], params: {} };
    if (g.type === 'git') r.url = `https://${g.host ?? 'host.example'}/${g.owner}/${g.repo}.git`;
    else {
      r.owner = g.owner;
      if (g.type !== 'indirect') r.repo = g.repo;
      if (g.host !== undefined && g.type !== 'indirect') r.host = g.host;
    }
    if (g.ref !== undefined) r.ref = g.ref;
    if (g.rev !== undefined) r.rev = g.rev;
    if (g.dir !== undefined && g.type !== 'indirect') r.dir = g.dir;
    if (g.attr !== undefined) r.attr = g.attr;
    return r;
  });

test('property: format then parse gives back the same reference', () => {
  fc.assert(
    fc.property(flakeRefArb, (ref) => {
      assert.deepEqual(parseFlakeRef(formatFlakeRef(ref)), ref);
    }),
    { numRuns: 2000 },
  );
});

test('property: formatting is canonical (parse∘format is idempotent on text)', () => {
  fc.assert(
    fc.property(flakeRefArb, (ref) => {
      const text = formatFlakeRef(ref);
      assert.equal(formatFlakeRef(parseFlakeRef(text)), text);
    }),
    { numRuns: 1000 },
  );
});

test('property: the parser never throws anything but FlakeRefError', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 60 }), (s) => {
      try {
        parseFlakeRef(s);
      } catch (err) {
        assert.ok(err instanceof FlakeRefError, `unexpected ${String(err)}`);
      }
    }),
    { numRuns: 3000 },
  );
});

test('credentials in a flake URL are refused, pointing at nixSecretName, and no message repeats them', () => {
  const SECRET = 'ghp_S3cr3tT0ken';
  for (const [url, what] of [
    [`git+https://alice:${SECRET}@git.example.org/team/app.git?rev=${REV}`, /a password in the URL/],
    [`git+https://${SECRET}@github.com/team/app.git?rev=${REV}`, /a user name or token in the URL/],
    [`git+https://oauth2:${SECRET}@gitlab.com/team/app?ref=main`, /a password in the URL/],
    [`git+http://${SECRET}:x-oauth-basic@git.local/app`, /a password in the URL/],
    [`git+ssh://git:${SECRET}@github.com/team/app?rev=${REV}`, /a password in the URL/],
    [`https://${SECRET}@example.org/app.tar.gz`, /a user name or token in the URL/],
    [`git+https://github.com/team/app.git?access_token=${SECRET}&rev=${REV}`, /the query parameter "access_token"/],
    [`git+https://gitlab.com/team/app.git?private_token=${SECRET}`, /the query parameter "private_token"/],
    [`git+https://git.example.org/app.git?token=${SECRET}`, /the query parameter "token"/],
    [
      `https://bucket.s3.amazonaws.com/app.tar.gz?X-Amz-Credential=AKIA&X-Amz-Signature=${SECRET}`,
      /the query parameter "X-Amz-(Credential|Signature)"/,
    ],
    [`https://acct.blob.core.windows.net/c/app.tar.gz?sv=2022&sig=${SECRET}`, /the query parameter "sig"/],
    [`git+https://git.example.org/app.git?password=${SECRET}`, /the query parameter "password"/],
    [`git+https://git.example.org/app.git?api-key=${SECRET}`, /the query parameter "api-key"/],
    [`github:team/app/${REV}?host=${SECRET}@github.com`, /user info in "host="/],
    [`gitlab:team/app/${REV}?host=u%3A${SECRET}%40gitlab.example.org`, /user info in "host="/],
  ] as const) {
    assert.throws(
      () => parseFlakeRef(`${url}#image`),
      (e: unknown) => {
        assert.ok(e instanceof FlakeRefError, url);
        assert.match(e.message, what, url);
        assert.match(
          e.message,
          /carries credentials .* would end up in the NixBuild, the build Job's environment and logs: remove them, and put the token in the Secret that the controller setting nixSecretName names/,
          url,
        );
        assert.ok(!e.message.includes(SECRET), `the message repeats the secret: ${e.message}`);
        return true;
      },
    );
  }
  // Other errors of a reference with credentials do not repeat them either.
  for (const url of [
    `git+https://u:${SECRET}@host/app?rev=short`,
    `git+https://host/app?access_token=${SECRET}&rev=1&rev=2`,
    `git+https://host/app?access_token=${SECRET}%zz`,
    `https://u:${SECRET}@host/app`,
    `git+https://u:${SECRET}@/x`,
  ]) {
    assert.throws(
      () => parseFlakeRef(url),
      (e: unknown) => e instanceof FlakeRefError && !e.message.includes(SECRET),
      url,
    );
  }
  // What stays allowed: an SSH login without a password, Nix's own parameters, a plain host override.
  assert.equal(
    parseFlakeRef(`git+ssh://git@github.com/team/app?rev=${REV}#image`).url,
    'ssh://git@github.com/team/app',
  );
  const nixParams = parseFlakeRef(
    `git+https://git.example.org/app.git?rev=${REV}&submodules=1&shallow=1&keytype=ssh-ed25519&publicKey=AAAA&verifyCommit=1&narHash=sha256-x&lastModified=1`,
  );
  assert.deepEqual(Object.keys(nixParams.params).sort(), [
    'keytype',
    'lastModified',
    'narHash',
    'publicKey',
    'shallow',
    'submodules',
    'verifyCommit',
  ]);
  assert.equal(parseFlakeRef(`gitlab:team/app/${REV}?host=git.example.org`).host, 'git.example.org');
  assert.equal(flakeCredentials(parseFlakeRef(`github:team/app/${REV}`)), undefined);
  // A reference built from a flake.lock (not parsed from text) is checked the same way.
  assert.match(
    flakeCredentials({ type: 'git', url: `https://u:${SECRET}@host/app.git`, rev: REV, params: {} }) ?? '',
    /a password in the URL/,
  );
  assert.match(
    flakeCredentials({ type: 'git', url: `https://host/app.git?access_token=${SECRET}`, rev: REV, params: {} }) ?? '',
    /the query parameter "access_token"/,
  );
  assert.equal(
    redactFlakeUrl(`git+https://u:${SECRET}@h/a?rev=${REV}&access_token=${SECRET}&host=x@y#i`),
    `git+https://***@h/a?rev=${REV}&access_token=***&host=***#i`,
  );
});
