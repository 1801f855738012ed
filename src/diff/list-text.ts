// `enbi diff --list` as text: one row per container (workload, image, the file it was written in, the root it
// was rendered through, what enbi builds it from), then each image with the workloads using it.
import { formatProblem } from '../problems.ts';
import type { ListedRoot, ListedWorkload, WorkloadList } from './list.ts';
import { line } from './output.ts';
import { summary, table } from './render.ts';

export function renderListText(list: WorkloadList): string {
  const out: string[] = [];
  const s = list.source;
  const at = s.commit !== undefined ? ` @ ${s.commit.slice(0, 12)}${s.ref !== undefined ? ` (${s.ref})` : ''}` : '';
  out.push(`Source: ${s.location}${s.path !== undefined && s.path !== '' ? ` path ${s.path}` : ''}${at}`);
  out.push(`Read:   ${summary(list.manifests)}`, '');
  const annotated = list.workloads.filter((w) => w.annotated).length;
  out.push(`Workloads (${list.workloads.length}, ${annotated} with enbi annotations):`);
  if (list.workloads.length > 0) {
    const rows = [['WORKLOAD', 'CONTAINER', 'IMAGE', 'FILE', 'ROOT', 'ENBI']];
    for (const w of list.workloads)
      for (const c of w.containers)
        rows.push([
          w.id,
          `${c.name}${c.init ? ' (init)' : ''}`,
          c.image ?? '(none)',
          w.file !== undefined ? `${w.file}${w.line !== undefined ? `:${w.line}` : ''}` : '(not known)',
          rootText(w.root),
          enbiText(w, c.flake),
        ]);
    out.push(table(rows));
  }
  out.push('', `Images (${list.images.length}):`);
  if (list.images.length > 0) {
    const rows = [['IMAGE', 'WORKLOADS', 'FLAKE']];
    for (const i of list.images) rows.push([i.image, i.workloads.join(', '), i.flakes.join(', ') || '-']);
    out.push(table(rows));
  }
  if (list.problems.length > 0)
    out.push('', `Problems (${list.problems.length}):`, ...list.problems.map((p) => `  ${formatProblem(p)}`));
  if (list.warnings.length > 0) out.push('', 'Warnings:', ...list.warnings.map((w) => `  ${formatProblem(w)}`));
  return `${out.map((l) => line(l)).join('\n')}\n`;
}

function rootText(r: ListedRoot): string {
  if (r.kind === 'file') return 'file';
  const where =
    r.object !== undefined && r.file !== undefined ? ` (${r.file}${r.line !== undefined ? `:${r.line}` : ''})` : '';
  const by =
    r.kind === 'kustomization' ? 'kustomize build' : r.kind === 'chart' ? 'helm template' : `${r.kind} ${r.object}`;
  return `${by}${where} → ${r.path}`;
}

function enbiText(w: ListedWorkload, flake: string | undefined): string {
  if (flake !== undefined) return flake;
  if (!w.annotated) return '-';
  return w.planned ? '- (not built)' : 'annotated, not planned (see Problems)';
}
