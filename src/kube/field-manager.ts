// The field manager names enbi writes under: the API server records them in each object's managedFields,
// so a GitOps tool beside enbi (Flux, Argo CD) and `kubectl` see which fields are enbi's, never a client
// library's default name shared with other tools.
export const CONTROLLER_FIELD_MANAGER = 'enbi-controller';
export const AGENT_FIELD_MANAGER = 'enbi-agent';
/** `enbi build`, run by a person: the NixBuild it creates is theirs, not the controller's. */
export const CLI_FIELD_MANAGER = 'enbi-cli';
