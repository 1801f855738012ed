// The protobuf.js JSON descriptor (descriptor.ts) compiled into what the codec needs: every message's fields
// by number with their type resolved, every enum's names, every method's path and message types. Names
// resolve as protobuf.js resolves them: inside the message, then each enclosing namespace outwards. A type
// that does not resolve, or one the codec does not handle, throws here, when the client is built.

export type Scalar = 'string' | 'bytes' | 'bool' | 'int32' | 'int64';
const SCALARS: ReadonlySet<string> = new Set<Scalar>(['string', 'bytes', 'bool', 'int32', 'int64']);

export interface EnumType {
  readonly kind: 'enum';
  readonly name: string;
  readonly byNumber: ReadonlyMap<number, string>;
  readonly byName: ReadonlyMap<string, number>;
}

/** What one field (or a map's value) holds. */
export type ValueType = { readonly kind: 'scalar'; readonly scalar: Scalar } | EnumType | MessageType;

export interface Field {
  readonly name: string;
  readonly id: number;
  readonly value: ValueType;
  readonly repeated: boolean;
  /** Set for map fields: the key's scalar type (`value` is then the map's value type). */
  readonly mapKey?: Scalar;
}

export interface MessageType {
  readonly kind: 'message';
  readonly name: string;
  /** In declaration order (the order of the decoded object's keys). */
  readonly fields: readonly Field[];
  /** By field number, for decoding. */
  readonly byId: ReadonlyMap<number, Field>;
  /** By field number, ascending: the order protobuf.js writes them in. */
  readonly encodeOrder: readonly Field[];
}

export interface Method {
  /** The HTTP/2 path, `/package.Service/Method`. */
  readonly path: string;
  readonly request: MessageType;
  readonly response: MessageType;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

interface JsonField {
  type: string;
  id: number;
  rule?: string;
  keyType?: string;
}
interface JsonMethod {
  requestType: string;
  responseType: string;
  requestStream?: boolean;
  responseStream?: boolean;
}
interface JsonNode {
  nested?: Record<string, JsonNode>;
  fields?: Record<string, JsonField>;
  values?: Record<string, number>;
  methods?: Record<string, JsonMethod>;
}

export interface Schema {
  /** A method by its service's full name and the method's name. */
  method(service: string, name: string): Method;
  /** A message type by its full name (no leading dot). */
  message(name: string): MessageType;
}

export function compileSchema(root: JsonNode): Schema {
  const nodes = new Map<string, JsonNode>();
  const walk = (node: JsonNode, name: string): void => {
    if (name !== '') nodes.set(name, node);
    for (const [k, child] of Object.entries(node.nested ?? {})) walk(child, name === '' ? k : `${name}.${k}`);
  };
  walk(root, '');

  const resolve = (ref: string, scope: string): string => {
    if (ref.startsWith('.')) {
      if (nodes.has(ref.slice(1))) return ref.slice(1);
    } else {
      for (let ns = scope; ; ns = ns.slice(0, Math.max(0, ns.lastIndexOf('.')))) {
        const full = ns === '' ? ref : `${ns}.${ref}`;
        if (nodes.has(full)) return full;
        if (ns === '') break;
      }
    }
    throw new Error(`protobuf descriptor: type ${ref} (used in ${scope}) does not resolve`);
  };

  const enums = new Map<string, EnumType>();
  const messages = new Map<string, MessageType>();
  const enumType = (name: string, values: Record<string, number>): EnumType => {
    let e = enums.get(name);
    if (e === undefined) {
      const byNumber = new Map<number, string>();
      // protobuf.js names a number by its first declared name (aliases keep the first).
      for (const [n, v] of Object.entries(values)) if (!byNumber.has(v)) byNumber.set(v, n);
      e = { kind: 'enum', name, byNumber, byName: new Map(Object.entries(values)) };
      enums.set(name, e);
    }
    return e;
  };
  const valueType = (type: string, scope: string): ValueType => {
    if (SCALARS.has(type)) return { kind: 'scalar', scalar: type as Scalar };
    const full = resolve(type, scope);
    const node = nodes.get(full)!;
    if (node.values !== undefined) return enumType(full, node.values);
    if (node.fields !== undefined) return messageType(full);
    throw new Error(`protobuf descriptor: ${full} (used in ${scope}) is neither a message nor an enum`);
  };
  function messageType(name: string): MessageType {
    const known = messages.get(name);
    if (known !== undefined) return known;
    const fields: Field[] = [];
    // Registered before its fields resolve, so that a message may contain itself.
    const m: MessageType = { kind: 'message', name, fields, byId: new Map(), encodeOrder: [] };
    messages.set(name, m);
    for (const [fieldName, f] of Object.entries(nodes.get(name)!.fields!)) {
      const value = valueType(f.type, name);
      if (f.keyType !== undefined) {
        if (!SCALARS.has(f.keyType) || f.keyType === 'bytes')
          throw new Error(`protobuf descriptor: ${name}.${fieldName}: map key type ${f.keyType} not supported`);
        fields.push({ name: fieldName, id: f.id, value, repeated: false, mapKey: f.keyType as Scalar });
      } else {
        if (f.rule !== undefined && f.rule !== 'repeated' && f.rule !== 'optional')
          throw new Error(`protobuf descriptor: ${name}.${fieldName}: rule ${f.rule} not supported`);
        fields.push({ name: fieldName, id: f.id, value, repeated: f.rule === 'repeated' });
      }
    }
    const byId = m.byId as Map<number, Field>;
    for (const f of fields) {
      if (byId.has(f.id)) throw new Error(`protobuf descriptor: ${name}: field number ${f.id} used twice`);
      byId.set(f.id, f);
    }
    (m.encodeOrder as Field[]).push(...[...fields].sort((a, b) => a.id - b.id));
    return m;
  }

  const methods = new Map<string, Method>();
  for (const [service, node] of nodes) {
    if (node.methods === undefined) continue;
    const scope = service.slice(0, Math.max(0, service.lastIndexOf('.')));
    for (const [name, m] of Object.entries(node.methods)) {
      const request = valueType(m.requestType, scope);
      const response = valueType(m.responseType, scope);
      if (request.kind !== 'message' || response.kind !== 'message')
        throw new Error(`protobuf descriptor: ${service}.${name}: request and response must be messages`);
      methods.set(`${service}/${name}`, {
        path: `/${service}/${name}`,
        request,
        response,
        requestStream: m.requestStream === true,
        responseStream: m.responseStream === true,
      });
    }
  }
  // Every message, including those no method names, so that a broken descriptor fails now.
  for (const [name, node] of nodes) if (node.fields !== undefined) messageType(name);

  return {
    method(service, name) {
      const m = methods.get(`${service}/${name}`);
      if (m === undefined) throw new Error(`containerd client: no method ${service}.${name} in the descriptor`);
      return m;
    },
    message(name) {
      const m = messages.get(name);
      if (m === undefined) throw new Error(`protobuf descriptor: no message ${name}`);
      return m;
    },
  };
}
