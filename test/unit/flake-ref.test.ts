import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { expandAttr } from '../../src/flake/attr.ts';
import { type FlakeRef, FlakeRefError, formatFlakeRef, gitUrlOf, parseFlakeRef } from '../../src/flake/ref.ts';

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
  for (const [input, message] of cases) assert.throws(() => parseFlakeRef(input), (e: unknown) => e instanceof FlakeRefError && message.test(e.message), input);
});

test('a short attribute expands to packages.<system>.<attr>; a full path must match the system', () => {
  assert.equal(expandAttr('image', 'aarch64-linux'), 'packages.aarch64-linux.image');
  assert.equal(expandAttr(undefined, 'x86_64-linux'), 'packages.x86_64-linux.default');
  assert.equal(expandAttr('myapp-docker.stream-layered', 'x86_64-linux'), 'packages.x86_64-linux.myapp-docker.stream-layered');
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
