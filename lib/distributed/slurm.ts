// SLURM's compact host and task lists, read as `scontrol show hostnames` expands them: the first
// host of a node list (where task 0 runs, the usual MASTER_ADDR) and the tasks on one node.

/** "gpu[009-011,020],cpu01" -> "gpu009": the first host of a SLURM node list, zero padding kept. */
export function firstSlurmHost(nodelist: string): string {
  const first = firstListItem(nodelist.trim());
  // Each bracket group contributes its first entry; of a range "009-011" that is its start.
  const host = first.replace(/\[([^\]]*)\]/g, (_, inner: string) => inner.split(',')[0].split('-')[0]);
  if (host === '' || /[[\]]/.test(host))
    throw new RangeError(`cannot read a host name from the SLURM node list '${nodelist}'`);
  return host;
}

/** The text before the first comma outside brackets. */
function firstListItem(list: string): string {
  let depth = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] === '[') depth++;
    else if (list[i] === ']') depth--;
    else if (list[i] === ',' && depth === 0) return list.slice(0, i);
  }
  return list;
}

/** SLURM_TASKS_PER_NODE "2(x3),1" -> [2, 2, 2, 1]: tasks on each node of the step, in node order. */
export function expandTasksPerNode(value: string): number[] {
  return value.split(',').flatMap((part) => {
    const match = /^(\d+)(?:\(x(\d+)\))?$/.exec(part.trim());
    if (!match) throw new RangeError(`cannot read SLURM_TASKS_PER_NODE '${value}' (expected e.g. '2(x3),1')`);
    return new Array<number>(Number(match[2] ?? 1)).fill(Number(match[1]));
  });
}
