#!/usr/bin/env python3
"""Copy bench/results/latest.md's tables into README.md's Performance section
(run after a full comparison: python3 bench/readme_tables.py [repo root]).
latest.md tables by index: 0 machine, 1 allocators, 2 wall, 3 peak RSS, 4 per phase,
5 coverage, 6 idle drift, 7 sleeping, 8 RSS over time, 9 noise.
README Performance tables in order: wall, peak RSS, idle, sleeping, churn, coverage."""
import re, sys
root = sys.argv[1] if len(sys.argv) > 1 else '.'
lat = open(f'{root}/bench/results/latest.md').read().split('\n')
def tables(lines, lo=0, hi=None):
    hi = len(lines) if hi is None else hi
    out, cur = [], None
    for i in range(lo, hi):
        if lines[i].startswith('|'):
            if cur is None: cur = [i, i]
            cur[1] = i
        elif cur is not None:
            out.append(cur); cur = None
    if cur is not None: out.append(cur)
    return out
lt = tables(lat)
src = ['\n'.join(lat[a:b+1]) for a, b in lt]
rd = open(f'{root}/README.md').read().split('\n')
p0 = next(i for i, l in enumerate(rd) if l.startswith('## Performance'))
p1 = next(i for i in range(p0+1, len(rd)) if rd[i].startswith('## '))
rt = tables(rd, p0, p1)
assert len(rt) == 6, len(rt)
mapping = [2, 3, 6, 7, 8, 5]
for (a, b), k in reversed(list(zip(rt, mapping))):
    hdr_new = src[k].split('\n')[0].split('|')[1].strip(); hdr_old = rd[a].split('|')[1].strip()
    assert hdr_new == hdr_old, (hdr_new, hdr_old)
    rd[a:b+1] = src[k].split('\n')
date = next(re.search(r'`(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC`', l).group(1) for l in lat if l.startswith('| date'))
cpu = next(re.search(r'`(.*)`', l).group(1) for l in lat if l.startswith('| CPU'))
txt = '\n'.join(rd)
txt = re.sub(r'was run on\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC', f'was run on\n{date} UTC', txt)
open(f'{root}/README.md', 'w').write(txt)
print('updated; date', date, 'cpu', cpu)
