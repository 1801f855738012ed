// enbi's own, minimal description of the part of containerd's gRPC API it uses, as a protobuf.js JSON
// descriptor (src/containerd/grpc/schema.ts compiles it). Written by hand from containerd's API definitions
// (github.com/containerd/containerd/api, services/{images,events,content,version,leases,snapshots,diff,containers}/v1
// and types/): only the
// services, methods, messages and fields enbi reads, with containerd's field numbers. Fields enbi does not
// read are left out; protobuf skips unknown fields, so the messages stay compatible with the full ones.
// The API is the same in containerd 1.6, 1.7 and 2.x (api v1.8 and v1.12 define these identically).
//
// Field names here are the JavaScript (camelCase) names: the wire format only uses the numbers.

const str = (id: number) => ({ type: 'string', id });
const i64 = (id: number) => ({ type: 'int64', id });
const strMap = (id: number) => ({ keyType: 'string', type: 'string', id });
const repeatedStr = (id: number) => ({ rule: 'repeated', type: 'string', id });
const bool = (id: number) => ({ type: 'bool', id });
const mounts = (id: number) => ({ rule: 'repeated', type: 'containerd.types.Mount', id });
const descriptor = (id: number) => ({ type: 'containerd.types.Descriptor', id });
const fieldMask = (id: number) => ({ type: 'google.protobuf.FieldMask', id });

export const CONTAINERD_DESCRIPTOR = {
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Empty: { fields: {} },
            Timestamp: { fields: { seconds: i64(1), nanos: { type: 'int32', id: 2 } } },
            FieldMask: { fields: { paths: repeatedStr(1) } },
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
            // types/mount.proto
            Mount: { fields: { type: str(1), source: str(2), target: str(3), options: repeatedStr(4) } },
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
            // Field 1 of api/events/content.proto's ContentCreate and ContentDelete is the digest, so a content
            // event decodes here too, with the digest in `name`.
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
                      methods: {
                        List: { requestType: 'ListImagesRequest', responseType: 'ListImagesResponse' },
                        Get: { requestType: 'GetImageRequest', responseType: 'GetImageResponse' },
                        Create: { requestType: 'CreateImageRequest', responseType: 'CreateImageResponse' },
                        Update: { requestType: 'UpdateImageRequest', responseType: 'UpdateImageResponse' },
                        Delete: { requestType: 'DeleteImageRequest', responseType: 'google.protobuf.Empty' },
                      },
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
                    GetImageRequest: { fields: { name: str(1) } },
                    GetImageResponse: { fields: { image: { type: 'Image', id: 1 } } },
                    CreateImageRequest: { fields: { image: { type: 'Image', id: 1 } } },
                    CreateImageResponse: { fields: { image: { type: 'Image', id: 1 } } },
                    // Without an update_mask, Update replaces the record's labels and target.
                    UpdateImageRequest: { fields: { image: { type: 'Image', id: 1 }, updateMask: fieldMask(2) } },
                    UpdateImageResponse: { fields: { image: { type: 'Image', id: 1 } } },
                    DeleteImageRequest: { fields: { name: str(1), sync: bool(2) } },
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
                        Subscribe: {
                          requestType: 'SubscribeRequest',
                          responseType: 'containerd.types.Envelope',
                          responseStream: true,
                        },
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
                        Read: {
                          requestType: 'ReadContentRequest',
                          responseType: 'ReadContentResponse',
                          responseStream: true,
                        },
                        Update: { requestType: 'UpdateRequest', responseType: 'UpdateResponse' },
                        Write: {
                          requestType: 'WriteContentRequest',
                          responseType: 'WriteContentResponse',
                          requestStream: true,
                          responseStream: true,
                        },
                        Abort: { requestType: 'AbortRequest', responseType: 'google.protobuf.Empty' },
                      },
                    },
                    Info: {
                      fields: {
                        digest: str(1),
                        size: i64(2),
                        createdAt: { type: 'google.protobuf.Timestamp', id: 3 },
                        labels: strMap(5),
                      },
                    },
                    // Labels named in update_mask as `labels.<key>` are set (or removed when empty); others stay.
                    UpdateRequest: { fields: { info: { type: 'Info', id: 1 }, updateMask: fieldMask(2) } },
                    UpdateResponse: { fields: { info: { type: 'Info', id: 1 } } },
                    WriteAction: { values: { STAT: 0, WRITE: 1, COMMIT: 2 } },
                    // The labels of a COMMIT are stored with the blob in the same transaction that creates it.
                    WriteContentRequest: {
                      fields: {
                        action: { type: 'WriteAction', id: 1 },
                        ref: str(2),
                        total: i64(3),
                        expected: str(4),
                        offset: i64(5),
                        data: { type: 'bytes', id: 6 },
                        labels: strMap(7),
                      },
                    },
                    WriteContentResponse: {
                      fields: { action: { type: 'WriteAction', id: 1 }, offset: i64(4), total: i64(5), digest: str(6) },
                    },
                    AbortRequest: { fields: { ref: str(1) } },
                    InfoRequest: { fields: { digest: str(1) } },
                    InfoResponse: { fields: { info: { type: 'Info', id: 1 } } },
                    ReadContentRequest: { fields: { digest: str(1), offset: i64(2), size: i64(3) } },
                    ReadContentResponse: { fields: { offset: i64(1), data: { type: 'bytes', id: 2 } } },
                  },
                },
              },
            },
            // services/containers/v1: which images the node's containers were made from (the agent never
            // removes an image a container uses).
            containers: {
              nested: {
                v1: {
                  nested: {
                    Containers: {
                      methods: {
                        List: { requestType: 'ListContainersRequest', responseType: 'ListContainersResponse' },
                      },
                    },
                    Container: { fields: { id: str(1), image: str(3) } },
                    ListContainersRequest: { fields: { filters: repeatedStr(1) } },
                    ListContainersResponse: { fields: { containers: { rule: 'repeated', type: 'Container', id: 1 } } },
                  },
                },
              },
            },
            leases: {
              nested: {
                v1: {
                  nested: {
                    Leases: {
                      methods: {
                        Create: { requestType: 'CreateRequest', responseType: 'CreateResponse' },
                        Delete: { requestType: 'DeleteRequest', responseType: 'google.protobuf.Empty' },
                      },
                    },
                    Lease: { fields: { id: str(1), labels: strMap(3) } },
                    CreateRequest: { fields: { id: str(1), labels: strMap(3) } },
                    CreateResponse: { fields: { lease: { type: 'Lease', id: 1 } } },
                    DeleteRequest: { fields: { id: str(1), sync: bool(2) } },
                  },
                },
              },
            },
            snapshots: {
              nested: {
                v1: {
                  nested: {
                    Snapshots: {
                      methods: {
                        Prepare: { requestType: 'PrepareSnapshotRequest', responseType: 'PrepareSnapshotResponse' },
                        Commit: { requestType: 'CommitSnapshotRequest', responseType: 'google.protobuf.Empty' },
                        Remove: { requestType: 'RemoveSnapshotRequest', responseType: 'google.protobuf.Empty' },
                        Stat: { requestType: 'StatSnapshotRequest', responseType: 'StatSnapshotResponse' },
                      },
                    },
                    PrepareSnapshotRequest: {
                      fields: { snapshotter: str(1), key: str(2), parent: str(3), labels: strMap(4) },
                    },
                    PrepareSnapshotResponse: { fields: { mounts: mounts(1) } },
                    CommitSnapshotRequest: {
                      fields: { snapshotter: str(1), name: str(2), key: str(3), labels: strMap(4) },
                    },
                    RemoveSnapshotRequest: { fields: { snapshotter: str(1), key: str(2) } },
                    StatSnapshotRequest: { fields: { snapshotter: str(1), key: str(2) } },
                    Kind: { values: { UNKNOWN: 0, VIEW: 1, ACTIVE: 2, COMMITTED: 3 } },
                    Info: {
                      fields: { name: str(1), parent: str(2), kind: { type: 'Kind', id: 3 }, labels: strMap(6) },
                    },
                    StatSnapshotResponse: { fields: { info: { type: 'Info', id: 1 } } },
                  },
                },
              },
            },
            diff: {
              nested: {
                v1: {
                  nested: {
                    Diff: { methods: { Apply: { requestType: 'ApplyRequest', responseType: 'ApplyResponse' } } },
                    ApplyRequest: { fields: { diff: descriptor(1), mounts: mounts(2) } },
                    ApplyResponse: { fields: { applied: descriptor(1) } },
                  },
                },
              },
            },
            version: {
              nested: {
                v1: {
                  nested: {
                    Version: {
                      methods: { Version: { requestType: 'google.protobuf.Empty', responseType: 'VersionResponse' } },
                    },
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
