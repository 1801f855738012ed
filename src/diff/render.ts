// Human-readable rendering of a DiffReport: a table of builds, then what is known and what is wrong.
import type { ManifestCounts } from '../pipeline/analyze.ts';
import { formatProblem } from '../problems.ts';
import { cell, line } from './output.ts';
import type { DiffReport } from './report.ts';

/** Columns padded to their widest cell; every cell escaped and cut (text from manifests may be anything). */
export function table(cells: string[][]): string {
  const rows = cells.map((r) => r.map((c) => cell(c)));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const short = (rev: string) => rev.slice(0, 12);
// Full commits make the table unreadable; -o json/yaml keep them whole.
const abbreviate = (text: string) => text.replace(/\b([0-9a-f]{12})[0-9a-f]{28}\b/g, '$1');

export function renderText(report: DiffReport): string {
  const out: string[] = [];
  const s = report.source;
  const at = s.commit !== undefined ? ` @ ${short(s.commit)}${s.ref !== undefined ? ` (${s.ref})` : ''}` : '';
  out.push(`Source: ${s.location}${s.path !== undefined && s.path !== '' ? ` path ${s.path}` : ''}${at}`);
  const truncated = report.nodes.filter((n) => !n.imagesComplete).map((n) => n.name);
  const fromAgent = report.nodes.filter((n) => n.imageSource === 'agent').length;
  const sources = `images from ${fromAgent} agent inventor${fromAgent === 1 ? 'y' : 'ies'} and ${report.nodes.length - fromAgent} Node.status.images`;
  if (report.manifests !== undefined) out.push(`Read:   ${summary(report.manifests)}`);
  out.push(
    `Nodes:  ${report.nodes.length} from ${report.nodesFrom}; mode ${report.mode}; ${sources}${truncated.length > 0 ? `; image lists may be truncated on ${truncated.join(', ')}` : ''}`,
  );
  // The on-demand view: pods bound to nodes that lack their image, by the build that would bring it.
  const waitingByBuild = new Map<string, number>();
  for (const w of report.waitingPods)
    if (w.buildId !== undefined) waitingByBuild.set(w.buildId, (waitingByBuild.get(w.buildId) ?? 0) + 1);
  const waitingIds = new Set(report.waitingPods.map((w) => w.workload));
  if (report.podsRead !== undefined) {
    const n = waitingIds.size;
    out.push(
      `Pods:   ${report.podsRead} bound read; ${n} wait${n === 1 ? 's' : ''} for an image missing on ${n === 1 ? 'its' : 'their'} node`,
    );
  }
  out.push('');
  const refused = report.refused;
  const refusedNote = `${refused} workload${refused === 1 ? '' : 's'} with enbi annotations refused (see Problems)`;
  const problemCount = report.problems.length + report.unbuildable.length;
  if (report.builds.length === 0) {
    const annotated = report.manifests === undefined || report.manifests.annotated > 0 || report.waitingPods.length > 0;
    const planned = (report.manifests?.annotated ?? 0) - refused;
    out.push(
      !annotated
        ? `No builds: no workload carries an enbi annotation (enbi.hrzn.ee/flake)${problemCount > 0 ? ` among those enbi could read; see the ${problemCount === 1 ? 'problem' : `${problemCount} problems`} below.` : ', so enbi has nothing to build.'}`
        : refused > 0 && planned <= 0 && report.waitingPods.length === 0
          ? `No builds: nothing is planned, ${refusedNote}.`
          : refused > 0
            ? `No builds: every image planned is where it is needed; ${refusedNote}.`
            : 'No builds: every image is where it is needed.',
    );
  } else {
    out.push(
      `${report.builds.length} build${report.builds.length === 1 ? '' : 's'} would start${refused > 0 ? ` (${refusedNote})` : ''}:`,
    );
    const rows = [['FLAKE', 'SYSTEM', 'NODE', 'WHEN', 'IMAGE', 'WHY']];
    for (const b of report.builds) {
      const node = b.node === null ? '(none)' : `${b.node}${b.emulated ? ' (emulated)' : ''}`;
      // Pods already waiting make an on-demand build start now; they are counted, not listed (see below).
      const pods = waitingByBuild.get(b.id) ?? 0;
      const when = b.trigger === 'eager' ? 'now' : pods > 0 ? 'now (pods waiting)' : 'on demand';
      const others = b.workloads.filter((w) => !waitingIds.has(w));
      const why = [...others, ...(pods > 0 ? [`${pods} waiting pod${pods === 1 ? '' : 's'}`] : [])].join(', ');
      rows.push([
        abbreviate(b.flake),
        b.system,
        node,
        when,
        abbreviate(b.images.join(',')),
        `missing on ${b.missingOn.join(',')} for ${why}`,
      ]);
    }
    out.push(table(rows));
    const placed = report.builds.filter((b) => b.node !== null && b.placement !== undefined);
    if (placed.length > 0) {
      out.push('', 'Why these nodes:');
      for (const b of placed)
        out.push(`  ${abbreviate(b.flake)} (${b.system}) on ${b.node}: ${abbreviate(b.placement!)}`);
    }
  }
  if (report.waitingPods.length > 0) {
    out.push('', `Pods waiting for an image missing on their node (${report.waitingPods.length}):`);
    const rows = [['POD', 'NODE', 'CONTAINER', 'IMAGE', 'WAITING', 'BUILD']];
    const builds = new Map(report.builds.map((b) => [b.id, b]));
    for (const w of report.waitingPods) {
      const b = w.buildId !== undefined ? builds.get(w.buildId) : undefined;
      const build =
        b !== undefined && b.node !== null
          ? `${b.system} on ${b.node}${b.emulated ? ' (emulated)' : ''}`
          : b !== undefined
            ? `${b.system}: no node can build it`
            : `none: ${w.state}${w.detail !== undefined ? ` (${w.detail})` : ''}`;
      rows.push([`${w.namespace}/${w.name}`, w.node, w.container, w.image, w.reason, build]);
    }
    out.push(table(rows));
  }
  if (report.refusedPods.length > 0) {
    out.push('', `Pods refused: waiting, but enbi builds nothing for them (${report.refusedPods.length}):`);
    const rows = [['POD', 'NODE', 'CONTAINER', 'IMAGE', 'WHY']];
    for (const r of report.refusedPods) rows.push([`${r.namespace}/${r.name}`, r.node, r.container, r.image, r.reason]);
    out.push(table(rows));
  }
  const unknown = report.statuses.filter(
    (st) => (st.state === 'unknown' || st.state === 'unschedulable') && !waitingIds.has(st.workload),
  );
  if (unknown.length > 0) {
    out.push('', 'Not decided:');
    for (const st of unknown)
      out.push(
        `  ${st.workload} ${st.container} ${st.image}${st.system !== undefined ? ` (${st.system})` : ''}: ${st.state}${st.nodes.length > 0 ? ` on ${st.nodes.join(',')}` : ''}: ${st.detail ?? ''}`,
      );
  }
  if (report.drift.length > 0) {
    out.push('', 'Not pinned in the flake reference (pinned by tag or flake.lock instead):');
    for (const d of report.drift) {
      const state = d.head === d.pinned ? 'same' : 'differs';
      out.push(
        `  ${d.flake}: ${d.branch} is at ${short(d.head)} now; the manifest pins ${short(d.pinned)} (${state}) — ${d.workloads.join(', ')}`,
      );
    }
  }
  const problems = [...report.problems.map(formatProblem), ...report.unbuildable];
  if (problems.length > 0) out.push('', `Problems (${problems.length}):`, ...problems.map((p) => `  ${p}`));
  if (report.warnings.length > 0) out.push('', 'Warnings:', ...report.warnings.map((w) => `  ${formatProblem(w)}`));
  return `${out.map((l) => line(l)).join('\n')}\n`;
}

/** The summary line: what was read, how much of it enbi plans, and what it skipped without complaint. */
export function summary(c: ManifestCounts): string {
  const n = (count: number, one: string, many = `${one}s`) => `${count} ${count === 1 ? one : many}`;
  const skipped = [
    c.skipped > 0 ? `${n(c.skipped, 'document')} that ${c.skipped === 1 ? 'is' : 'are'} not Kubernetes objects` : '',
    c.chartTemplates > 0 ? n(c.chartTemplates, 'Helm chart template') : '',
    c.excluded > 0 ? `${n(c.excluded, 'file')} excluded` : '',
  ].filter((s) => s !== '');
  const read = `${n(c.files, 'file')}, ${n(c.documents, 'document')}`;
  const skips = `skipped ${skipped.length > 0 ? skipped.join(', ') : 'nothing'}`;
  if (c.roots === 0) return `${read}: ${n(c.workloads, 'workload')} (${c.annotated} with enbi annotations); ${skips}`;
  // Rendered roots' workloads count with the plain ones; how many came from renders is said apart.
  return `${read} and ${n(c.roots, 'rendered root')}: ${n(c.workloads, 'workload')} (${c.renderedWorkloads} rendered, ${c.annotated} with enbi annotations); ${skips}`;
}
