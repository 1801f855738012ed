// gRPC status codes and how a call's status is read: `grpc-status` and `grpc-message` from the trailers (or
// from the headers of a trailers-only response), or derived from the HTTP status or the stream's reset code
// when the server sent none, with the mappings gRPC's own clients use.
import { constants, type IncomingHttpHeaders } from 'node:http2';

export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

export interface CallStatus {
  code: number;
  details: string;
}

/** grpc-message is percent-encoded UTF-8; a malformed escape is kept as it is. */
export function decodeGrpcMessage(raw: string): string {
  if (!raw.includes('%')) return raw;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const hex = raw.slice(i + 1, i + 3);
    if (raw[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(...Buffer.from(raw[i]!, 'utf8'));
    }
  }
  return Buffer.from(out).toString('utf8');
}

const header = (h: IncomingHttpHeaders, name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** The status carried by these headers or trailers, if they carry one. */
export function statusFromMetadata(h: IncomingHttpHeaders): CallStatus | undefined {
  const raw = header(h, 'grpc-status');
  if (raw === undefined) return undefined;
  const code = Number(raw);
  const details = decodeGrpcMessage(header(h, 'grpc-message') ?? '');
  if (!Number.isInteger(code) || code < 0 || code > 16)
    return { code: Status.UNKNOWN, details: `invalid grpc-status ${raw}${details ? `: ${details}` : ''}` };
  return { code, details };
}

/** A response that is not gRPC (HTTP status other than 200, or another content type). */
export function statusFromHttp(httpStatus: number, contentType: string | undefined): CallStatus | undefined {
  if (httpStatus !== 200) {
    const code =
      httpStatus === 400
        ? Status.INTERNAL
        : httpStatus === 401
          ? Status.UNAUTHENTICATED
          : httpStatus === 403
            ? Status.PERMISSION_DENIED
            : httpStatus === 404
              ? Status.UNIMPLEMENTED
              : [429, 502, 503, 504].includes(httpStatus)
                ? Status.UNAVAILABLE
                : Status.UNKNOWN;
    return { code, details: `received HTTP status ${httpStatus}` };
  }
  if (contentType === undefined || !contentType.startsWith('application/grpc'))
    return { code: Status.UNKNOWN, details: `received content-type ${contentType ?? '(none)'}` };
  return undefined;
}

/** A stream reset by the server before any status. */
export function statusFromReset(rstCode: number): CallStatus {
  switch (rstCode) {
    case constants.NGHTTP2_REFUSED_STREAM:
      return { code: Status.UNAVAILABLE, details: 'stream refused by the server' };
    case constants.NGHTTP2_CANCEL:
      return { code: Status.CANCELLED, details: 'call cancelled by the server' };
    case constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return { code: Status.RESOURCE_EXHAUSTED, details: 'bandwidth exhausted (ENHANCE_YOUR_CALM)' };
    case constants.NGHTTP2_INADEQUATE_SECURITY:
      return { code: Status.PERMISSION_DENIED, details: 'protocol not secure enough' };
    default:
      return { code: Status.INTERNAL, details: `stream reset with code ${rstCode} before a status` };
  }
}

/** grpc-timeout: at most eight digits, in the finest unit that fits. */
export function grpcTimeout(ms: number): string {
  const t = Math.max(1, Math.ceil(ms));
  if (t < 1e8) return `${t}m`;
  if (t / 1e3 < 1e8) return `${Math.ceil(t / 1e3)}S`;
  if (t / 6e4 < 1e8) return `${Math.ceil(t / 6e4)}M`;
  return `${Math.min(99_999_999, Math.ceil(t / 3.6e6))}H`;
}
