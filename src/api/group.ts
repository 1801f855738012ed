// The API group and version of enbi's custom resources, in a module of their own: the node agent imports
// them without loading the zod schemas.
export const GROUP = 'enbi.hrzn.ee';
export const VERSION = 'v1alpha1';
