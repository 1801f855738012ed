// A CustomResourceDefinition of enbi's group from zod schemas: one served and stored version, the status
// subresource, printer columns, and the OpenAPI schema generated from zod (the CRDs in deploy/crd/ are
// written from these, and a test fails when they are stale).
import { z } from 'zod';

export interface CrdOptions {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: 'Namespaced' | 'Cluster';
  printerColumns: { name: string; type: string; jsonPath: string }[];
  /** Top-level fields (spec, status) and their zod schemas; `required` lists those that must be present. */
  fields: Record<string, z.ZodType>;
  required?: string[];
}

export function crdFor(o: CrdOptions): Record<string, unknown> {
  const openApi = (schema: z.ZodType) =>
    stripForOpenApi(z.toJSONSchema(schema, { io: 'input', target: 'openapi-3.0' }) as Record<string, unknown>);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${o.plural}.${o.group}` },
    spec: {
      group: o.group,
      names: {
        kind: o.kind,
        listKind: `${o.kind}List`,
        plural: o.plural,
        singular: o.singular,
        shortNames: o.shortNames,
        categories: ['enbi'],
      },
      scope: o.scope,
      versions: [
        {
          name: o.version,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: o.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              ...(o.required !== undefined ? { required: o.required } : {}),
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                ...Object.fromEntries(Object.entries(o.fields).map(([k, schema]) => [k, openApi(schema)])),
              },
            },
          },
        },
      ],
    },
  };
}

// Kubernetes' structural schemas reject $schema and additionalProperties: false beside properties.
function stripForOpenApi(schema: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$schema' || (k === 'additionalProperties' && v === false)) continue;
    if (Array.isArray(v))
      out[k] = v.map((x) => (x !== null && typeof x === 'object' ? stripForOpenApi(x as Record<string, unknown>) : x));
    else if (v !== null && typeof v === 'object') out[k] = stripForOpenApi(v as Record<string, unknown>);
    else out[k] = v;
  }
  return out;
}
