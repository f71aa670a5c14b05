# Copyright (c) gskd-mm contributors. All rights reserved.
"""Render the results tables of the documentation pages from their results.

Every table between ``<!-- generated: NAME -->`` and ``<!-- end generated:
NAME -->`` in the pages of :data:`gskd_mm.analysis.results_pages.PAGES` is
written from its committed results file (``results/*.json``, the demo's
``step_costs.json``), with a line of its provenance
(:mod:`gskd_mm.analysis.results_pages`). After a new result, update its
JSON file and run this; a test runs ``--check``.

Example::

    python tools/misc/gen_docs_tables.py
    python tools/misc/gen_docs_tables.py --check  # exit 1 if a page differs
"""
import argparse
import os.path as osp
import sys

from gskd_mm.analysis.results_pages import PAGES, render_page, stale_tables

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--root', default=ROOT, help='repository root')
    parser.add_argument(
        '--check',
        action='store_true',
        help='only compare the pages with their results; exit 1 naming each '
        'page and table that differs')
    args = parser.parse_args()
    if args.check:
        stale = [f'{page}: table {name} differs from its results'
                 for page in PAGES
                 for name in stale_tables(args.root, page)]
        if stale:
            sys.exit('\n'.join(stale) + '\nrun python tools/misc/'
                     'gen_docs_tables.py (after updating the results file)')
        return
    for page in PAGES:
        path = osp.join(args.root, page)
        with open(path) as f:
            text = f.read()
        rendered = render_page(args.root, page, text)
        if rendered != text:
            with open(path, 'w') as f:
                f.write(rendered)
            print(f'wrote {page}')


if __name__ == '__main__':
    main()
