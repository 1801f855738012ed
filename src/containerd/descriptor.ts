// enbi's own, minimal description of the part of containerd's gRPC API it uses, as a protobuf.js JSON
// descriptor (what @grpc/proto-loader's fromJSON takes). Written by hand from containerd's API definitions
// (github.com/containerd/containerd/api, services/{images,events,content,version}/v1 and types/): only the
// services, methods, messages and fields enbi reads, with containerd's field numbers. Fields enbi does not
// read are left out; protobuf skips unknown fields, so the messages stay compatible with the full ones.
// The API is the same in containerd 1.6, 1.7 and 2.x (api v1.8 and v1.12 define these identically).
//
// Field names here are the JavaScript (camelCase) names: the wire format only uses the numbers.

const str = (id: number) => ({ type: 'string', id });
const i64 = (id: number) => ({ type: 'int64', id });
const strMap = (id: number) => ({ keyType: 'string', type: 'string', id });
const repeatedStr = (id: number) => ({ rule: 'repeated', type: 'string', id });

export const CONTAINERD_DESCRIPTOR = {
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Empty: { fields: {} },
            Timestamp: { fields: { seconds: i64(1), nanos: { type: 'int32', id: 2 } } },
          },
        },
      },
    },
    containerd: {
      nested: {
        types: {
          nested: {
            // types/descriptor.proto
            Descriptor: { fields: { mediaType: str(1), digest: str(2), size: i64(3), annotations: strMap(5) } },
            // types/event.proto: Envelope { timestamp = 1; namespace = 2; topic = 3; google.protobuf.Any event = 4 }.
            // Its Any is declared here as ImageEventAny: an Any is { string type_url = 1; bytes value = 2 }, and
            // the bytes of an embedded message are the same on the wire, so the value decodes straight into the
            // image event. Only image topics are subscribed to (see events.ts).
            Envelope: {
              fields: {
                timestamp: { type: 'google.protobuf.Timestamp', id: 1 },
                namespace: str(2),
                topic: str(3),
                event: { type: 'ImageEventAny', id: 4 },
              },
            },
            ImageEventAny: { fields: { typeUrl: str(1), value: { type: 'ImageEvent', id: 2 } } },
            // api/events/image.proto: ImageCreate and ImageUpdate { name = 1; labels = 2 }, ImageDelete { name = 1 }.
            ImageEvent: { fields: { name: str(1) } },
          },
        },
        services: {
          nested: {
            images: {
              nested: {
                v1: {
                  nested: {
                    Images: {
                      methods: { List: { requestType: 'ListImagesRequest', responseType: 'ListImagesResponse' } },
                    },
                    Image: {
                      fields: {
                        name: str(1),
                        labels: strMap(2),
                        target: { type: 'containerd.types.Descriptor', id: 3 },
                        createdAt: { type: 'google.protobuf.Timestamp', id: 7 },
                        updatedAt: { type: 'google.protobuf.Timestamp', id: 8 },
                      },
                    },
                    // filters are OR'ed; the selectors inside one filter (comma-separated) are AND'ed.
                    ListImagesRequest: { fields: { filters: repeatedStr(1) } },
                    ListImagesResponse: { fields: { images: { rule: 'repeated', type: 'Image', id: 1 } } },
                  },
                },
              },
            },
            events: {
              nested: {
                v1: {
                  nested: {
                    Events: {
                      methods: {
                        Subscribe: { requestType: 'SubscribeRequest', responseType: 'containerd.types.Envelope', responseStream: true },
                      },
                    },
                    SubscribeRequest: { fields: { filters: repeatedStr(1) } },
                  },
                },
              },
            },
            content: {
              nested: {
                v1: {
                  nested: {
                    Content: {
                      methods: {
                        Info: { requestType: 'InfoRequest', responseType: 'InfoResponse' },
                        Read: { requestType: 'ReadContentRequest', responseType: 'ReadContentResponse', responseStream: true },
                      },
                    },
                    Info: { fields: { digest: str(1), size: i64(2), labels: strMap(5) } },
                    InfoRequest: { fields: { digest: str(1) } },
                    InfoResponse: { fields: { info: { type: 'Info', id: 1 } } },
                    ReadContentRequest: { fields: { digest: str(1), offset: i64(2), size: i64(3) } },
                    ReadContentResponse: { fields: { offset: i64(1), data: { type: 'bytes', id: 2 } } },
                  },
                },
              },
            },
            version: {
              nested: {
                v1: {
                  nested: {
                    Version: { methods: { Version: { requestType: 'google.protobuf.Empty', responseType: 'VersionResponse' } } },
                    VersionResponse: { fields: { version: str(1), revision: str(2) } },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};
