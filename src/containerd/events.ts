// containerd's event stream (events.v1 Subscribe), restricted to image events of one namespace.
import type { ContainerdClient, ContainerdError } from './client.ts';
import { timestampMs } from './images.ts';

export const IMAGE_TOPICS = ['/images/create', '/images/update', '/images/delete'] as const;
export type ImageTopic = (typeof IMAGE_TOPICS)[number];

export interface ImageEvent {
  topic: ImageTopic;
  /** The image record's name. */
  name: string;
  /** When containerd published it (ms since the epoch). */
  at: number;
}

interface WireEnvelope {
  timestamp: { seconds: number; nanos: number } | null;
  namespace: string;
  topic: string;
  event: { typeUrl: string; value: { name: string } | null } | null;
}

/** One filter per topic (filters are OR'ed), each also requiring the namespace. */
export const imageEventFilters = (namespace: string): string[] =>
  IMAGE_TOPICS.map((t) => `topic==${JSON.stringify(t)},namespace==${JSON.stringify(namespace)}`);

export interface Subscription {
  /** Ends the stream; onEnd is not called. */
  cancel(): void;
}

/**
 * Follows image events. containerd sends nothing until an event happens (not even headers), so there is no
 * "subscribed" moment to wait for: subscribe first, then list. A change in the instant before containerd
 * registered the subscription could be missed by both, so callers list once more shortly after.
 * onEnd is called once when the stream fails or ends (containerd stopped or restarted): subscribe again.
 */
export function subscribeImageEvents(
  c: ContainerdClient,
  onEvent: (e: ImageEvent) => void,
  onEnd: (err: Error) => void,
): Subscription {
  const stream = c.stream<WireEnvelope>('events', 'Subscribe', { filters: imageEventFilters(c.namespace) });
  let done = false;
  const end = (err: Error): void => {
    if (done) return;
    done = true;
    onEnd(err);
  };
  stream.on('data', (env: WireEnvelope) => {
    const topic = env.topic as ImageTopic;
    const name = env.event?.value?.name ?? '';
    if (env.namespace !== c.namespace || !IMAGE_TOPICS.includes(topic) || name === '') return;
    onEvent({ topic, name, at: timestampMs(env.timestamp) });
  });
  stream.on('error', (e: ContainerdError) => end(new Error(`containerd event stream: ${e.details || e.message}`)));
  stream.on('end', () => end(new Error('containerd event stream ended')));
  return {
    cancel: () => {
      done = true;
      stream.cancel();
    },
  };
}
