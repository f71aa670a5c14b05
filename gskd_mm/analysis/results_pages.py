# Copyright (c) gskd-mm contributors. All rights reserved.
"""Results tables of the documentation pages, rendered from committed
results files: the library of ``tools/misc/gen_docs_tables.py``.

Every measured result lives in a JSON file of ``results/`` (or, for the
demo's step costs, ``projects/gskd_demo/step_costs.json``), with its
provenance. A page marks each table it shows::

    <!-- generated: demo_study/methods -->
    ...
    <!-- end generated: demo_study/methods -->

``demo_study/methods`` is the table ``methods`` of
``results/demo_study.json``; ``step_costs`` is the demo's step costs
(:func:`step_costs_table`). Between the markers :func:`render_page` writes
the table and a line of its provenance; :func:`stale_tables` names the
tables of a page that differ from their results.

A results file::

    {"provenance": {"date": ..., "commit": ..., "machine": ...,
                    "teacher_miou": ..., "seeds": ..., "command": ...},
     "tables": {"NAME": {"header": [...], "rows": [[...], ...]}}}

Cells are strings, as published; a table may carry its own
``provenance``, which updates the file's.
"""
import json
import os.path as osp
import re
from typing import Dict, List, Optional

from .step_cost import matched_iters
from .tables import markdown_table

#: The pages whose results tables are generated, from the repository root.
PAGES = ('README.md', 'projects/gskd_demo/README.md',
         'projects/gskd_demo/docs/compute_plan.md', 'configs/gskd/README.md',
         'docs/en/benchmarks.md', 'docs/en/notes/results_history.md')
RESULTS_DIR = 'results'
STEP_COSTS = 'projects/gskd_demo/step_costs.json'
#: The demo's schedules whose matched iterations the step costs table
#: gives.
SCHEDULES = (150, 600, 1200)
BLOCK = re.compile(
    r'(?P<start><!-- generated: (?P<name>[\w./-]+) -->\n)'
    r'(?P<body>.*?)'
    r'(?P<end><!-- end generated: (?P=name) -->)', re.S)
#: Provenance keys, in the order they are shown, and their labels.
PROVENANCE = (('date', ''), ('commit', 'code '), ('machine', ''),
              ('teacher_miou', 'teacher mIoU '), ('seeds', 'seeds '),
              ('command', ''), ('note', ''))


def provenance_line(provenance: Dict, source: str) -> str:
    """One line naming the results file and its provenance."""
    parts = []
    for key, label in PROVENANCE:
        value = provenance.get(key)
        if value in (None, ''):
            continue
        if key == 'command':
            value = f'`{value}`'
        parts.append(f'{label}{value}')
    return f'*Source: [`{osp.basename(source)}`]({source}); ' + \
        '; '.join(parts) + '.*'


def read_json(root: str, path: str) -> dict:
    """A results file, with the file named in its error."""
    full = osp.join(root, path)
    if not osp.isfile(full):
        raise FileNotFoundError(f'{path} does not exist: a page names a '
                                'table of it')
    with open(full) as f:
        return json.load(f)


def step_costs_table(costs: dict) -> List[List[str]]:
    """The header and rows of the demo's step costs: each method's ratio
    with its interval, and no KD's matched iterations at the
    :data:`SCHEDULES` (a cached method's also with its one-off cache pass,
    ``pass_iters`` no-KD iterations, amortised over the run)."""
    header = ['method', 'step cost over no KD [95 % CI]', 'repeats'] + [
        f'no KD at equal compute, {iters} its' for iters in SCHEDULES
    ]
    rows = []
    for key, cost in costs['methods'].items():
        if key == 'no_kd':
            continue
        if cost.get('low') is None:  # an earlier measurement, kept
            interval = f' (no interval; {cost.get("measured", "earlier")})'
        else:
            interval = f' [{cost["low"]:.3f}, {cost["high"]:.3f}]'
        passes = cost.get('pass_iters')
        if passes is not None:
            interval += f'; cache pass {passes:.0f} no-KD its'
        rows.append([
            f'`{key}`', f'{cost["ratio"]:.3f}{interval}',
            str(cost.get('repeats') or '')
        ] + [
            str(matched_iters(i, cost['ratio'])) + (
                '' if passes is None else
                f' ({matched_iters(i, cost["ratio"] + passes / i)} with '
                'the pass)') for i in SCHEDULES
        ])
    return [header] + rows


def render_table(root: str, name: str, page: str) -> str:
    """The markdown of the generated table ``name`` on ``page``, with its
    provenance line (links relative to the page)."""
    page_dir = osp.dirname(page)
    if name == 'step_costs':
        costs = read_json(root, STEP_COSTS)
        header, *rows = step_costs_table(costs)
        provenance = dict(
            date=costs['measured'],
            commit=costs.get('commit'),
            machine=f'{costs["cpu"]} ({costs.get("cpu_count", "?")} cores, '
            f'{costs["threads"]} thread per run)',
            note=' '.join(
                filter(None, (costs.get('note'),
                              costs.get('cached_measurement',
                                        {}).get('note')))) or None)
        source = STEP_COSTS
    else:
        file, _, table = name.partition('/')
        source = f'{RESULTS_DIR}/{file}.json'
        data = read_json(root, source)
        if table not in data.get('tables', {}):
            raise KeyError(f'{source} has no table {table!r} (a page names '
                           f'{name!r})')
        entry = data['tables'][table]
        header, rows = entry['header'], entry['rows']
        provenance = dict(data.get('provenance', {}))
        provenance.update(entry.get('provenance', {}))
    link = osp.relpath(osp.join(root, source), osp.join(root, page_dir))
    return (markdown_table(header, rows) + '\n\n' +
            provenance_line(provenance, link) + '\n')


def render_page(root: str, page: str, text: Optional[str] = None) -> str:
    """The page with every generated table rendered from its results."""
    if text is None:
        with open(osp.join(root, page)) as f:
            text = f.read()

    def block(match: re.Match) -> str:
        return (match['start'] + render_table(root, match['name'], page) +
                match['end'])

    return BLOCK.sub(block, text)


def stale_tables(root: str,
                 page: str,
                 text: Optional[str] = None) -> List[str]:
    """The names of the generated tables of ``page`` that differ from
    their results (empty if the page is up to date)."""
    if text is None:
        with open(osp.join(root, page)) as f:
            text = f.read()
    return [
        m['name'] for m in BLOCK.finditer(text)
        if m['body'] != render_table(root, m['name'], page)
    ]
