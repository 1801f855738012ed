// Paths left out of the analysis: `--exclude GLOB` and an `.enbiignore` file at the source's root, both in
// gitignore's syntax (a subset: `*`, `?`, `**`, a leading `/` anchors, a trailing `/` means a directory,
// `!` re-includes, `#` comments). A pattern that matches a directory leaves out everything below it.

export const IGNORE_FILE = '.enbiignore';

interface Rule {
  negate: boolean;
  dirOnly: boolean;
  regex: RegExp;
}

export type PathFilter = (path: string) => boolean;

/** A predicate that is true for paths (relative, forward slashes) the patterns leave out. */
export function ignoreMatcher(patterns: readonly string[]): PathFilter {
  const rules = patterns.map(ruleOf).filter((r): r is Rule => r !== undefined);
  if (rules.length === 0) return () => false;
  return (path) => {
    const parts = path.split('/');
    // Each directory above the file, then the file itself; the last rule that matches decides.
    let ignored = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const isDir = i < parts.length;
      for (const rule of rules) {
        if (rule.dirOnly && !isDir) continue;
        if (rule.regex.test(prefix)) ignored = !rule.negate;
      }
      if (ignored && isDir) return true;
    }
    return ignored;
  };
}

export function parseIgnoreFile(text: string): string[] {
  return text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.startsWith('#'));
}

function ruleOf(raw: string): Rule | undefined {
  let p = raw.trim();
  if (p === '') return undefined;
  const negate = p.startsWith('!');
  if (negate) p = p.slice(1);
  const dirOnly = p.endsWith('/');
  if (dirOnly) p = p.replace(/\/+$/, '');
  // A pattern with a slash (other than at its end) is anchored at the root; one without matches at any depth.
  const anchored = p.includes('/');
  p = p.replace(/^\/+/, '');
  if (p === '') return undefined;
  const body = globToRegex(p);
  return { negate, dirOnly, regex: new RegExp(anchored ? `^${body}$` : `(?:^|/)${body}$`) };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      // "**/" any number of directories; "/**" everything below; "**" alone anything.
      if (glob[i + 2] === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += '.*';
        i++;
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return out;
}
