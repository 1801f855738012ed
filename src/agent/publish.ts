// Writes a node's NodeImages object: created once (owned by its Node, so that deleting the Node deletes
// it), then only its status, by JSON merge patch on the status subresource. The agent is the object's only
// writer, so a merge patch without resourceVersion is safe and never conflicts.
// Over the small API client (src/kube/lite.ts): the agent runs on every node, and client-node would be most
// of its memory.
import {
  GROUP,
  NODE_IMAGES_KIND,
  NODE_IMAGES_PLURAL,
  type NodeImages,
  type NodeImagesStatus,
  VERSION,
} from '../api/nodeimages-names.ts';
import { isConflict, isNotFound } from '../kube/errors.ts';
import type { LiteApi } from '../kube/lite.ts';

const COLLECTION = `/apis/${GROUP}/${VERSION}/${NODE_IMAGES_PLURAL}`;

export class NodeImagesWriter {
  readonly node: string;
  readonly #api: LiteApi;
  #exists = false;
  #last: NodeImagesStatus | undefined;
  /** Requests that changed the object (create and status patches). */
  writes = 0;

  constructor(api: LiteApi, node: string) {
    this.node = node;
    this.#api = api;
  }

  /** The object as stored, or undefined. */
  async read(): Promise<NodeImages | undefined> {
    try {
      const o = await this.#api.get<NodeImages>(`${COLLECTION}/${encodeURIComponent(this.node)}`);
      this.#exists = true;
      this.#last = o.status;
      return o;
    } catch (e) {
      if (isNotFound(e)) {
        this.#exists = false;
        return undefined;
      }
      throw e;
    }
  }

  async #create(): Promise<void> {
    // Owned by the Node when it can be read (the agent may read Nodes): garbage-collected with it.
    let ownerReferences: NonNullable<NodeImages['metadata']['ownerReferences']> | undefined;
    try {
      const n = await this.#api.get<{ metadata?: { uid?: string } }>(`/api/v1/nodes/${encodeURIComponent(this.node)}`);
      if (n.metadata?.uid) ownerReferences = [{ apiVersion: 'v1', kind: 'Node', name: this.node, uid: n.metadata.uid }];
    } catch {
      ownerReferences = undefined;
    }
    const body: NodeImages = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: NODE_IMAGES_KIND,
      metadata: {
        name: this.node,
        labels: { 'app.kubernetes.io/managed-by': 'enbi-agent' },
        ...(ownerReferences ? { ownerReferences } : {}),
      },
    };
    try {
      await this.#api.post(COLLECTION, body);
      this.writes++;
    } catch (e) {
      if (!isConflict(e)) throw e; // created meanwhile (a previous agent): fine
    }
    this.#exists = true;
  }

  /** Writes the whole status. */
  async writeStatus(status: NodeImagesStatus): Promise<void> {
    await this.#patch(status);
    this.#last = status;
  }

  /**
   * Refreshes observedAt alone (a resync that found nothing new): a small request. If the object went away
   * meanwhile, the whole last status is written again.
   */
  async touch(observedAt: string): Promise<void> {
    if (this.#last === undefined) throw new Error('NodeImagesWriter.touch before a first writeStatus');
    await this.#patch({ observedAt }, { ...this.#last, observedAt });
    this.#last = { ...this.#last, observedAt };
  }

  async #patch(status: Partial<NodeImagesStatus>, whole: Partial<NodeImagesStatus> = status): Promise<void> {
    if (!this.#exists) {
      await this.#create();
      status = whole;
    }
    const patch = (s: Partial<NodeImagesStatus>) =>
      this.#api.mergePatch(`${COLLECTION}/${encodeURIComponent(this.node)}/status`, { status: s });
    try {
      await patch(status);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      // Deleted behind the agent's back: create it again, with the whole status.
      this.#exists = false;
      await this.#create();
      await patch(whole);
    }
    this.writes++;
  }
}
