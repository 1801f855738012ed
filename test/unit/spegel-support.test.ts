// The Spegel harness's pure parts: the libp2p peer id of a Spegel key (so static bootstrap can name every
// peer before any starts) and the reading of Spegel's Prometheus metrics.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { peerKey, spegelMetrics } from '../support/spegel.ts';

describe('Spegel harness', () => {
  it('derives the peer id Spegel v0.7.4 itself logged for a key in its data dir', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spegel-key-'));
    try {
      // A key Spegel v0.7.4 created (`--data-dir`); it logged "starting p2p router" with this id.
      writeFileSync(
        join(dir, 'private.key'),
        '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEdzwRBVt7offau91YJM3OiwiHOZXfrSSh+achsypgo1\n-----END PRIVATE KEY-----\n',
      );
      assert.equal(peerKey(dir), '12D3KooWG4kc6JUP1CiSywktBhUtXNH4NBk3TFPcMy43i6uehPHL');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("creates a key in Spegel's format when there is none, and keeps it", () => {
    const dir = mkdtempSync(join(tmpdir(), 'spegel-key-'));
    try {
      const id = peerKey(join(dir, 'data'));
      assert.match(id, /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/);
      assert.match(readFileSync(join(dir, 'data', 'private.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
      assert.equal(peerKey(join(dir, 'data')), id);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads mirror hits, served bytes and advertisements from /metrics', () => {
    // Lines of a real node's /metrics (Spegel v0.7.4), comments and other metrics included.
    const m = spegelMetrics(
      [
        '# HELP spegel_mirror_requests_total Total number of mirror requests.',
        '# TYPE spegel_mirror_requests_total counter',
        'http_response_size_bytes_sum{code="200",handler="/debug/web/stats",method="GET"} 17470',
        'http_response_size_bytes_sum{code="200",handler="/v2/*",method="GET"} 1.9143563e+07',
        'http_response_size_bytes_count{code="200",handler="/v2/*",method="GET"} 25',
        'http_response_size_bytes_sum{code="206",handler="/v2/*",method="GET"} 100',
        'http_response_size_bytes_count{code="206",handler="/v2/*",method="GET"} 1',
        'http_response_size_bytes_count{code="200",handler="/v2/*",method="HEAD"} 57',
        'http_response_size_bytes_count{code="404",handler="/v2/*",method="HEAD"} 30',
        'spegel_advertised_content_digests{registry="registry.local"} 23',
        'spegel_advertised_image_tags{registry="registry.local"} 10',
        'spegel_mirror_requests_total{cache="hit",registry="registry.local"} 75',
        'spegel_mirror_requests_total{cache="miss",registry="registry.local"} 30',
        'spegel_resolve_duration_seconds_bucket{router="libp2p",le="+Inf"} 37',
      ].join('\n'),
    );
    assert.equal(m.mirrorHits, 75);
    assert.equal(m.mirrorMisses, 30);
    assert.equal(m.registryBytes, 19143663);
    assert.equal(m.registryResponses, 26);
    assert.equal(m.advertisedTags, 10);
    assert.equal(m.advertisedDigests, 23);
    assert.equal(m.sum('spegel_resolve_duration_seconds_bucket', { le: '+Inf' }), 37);
  });
});
