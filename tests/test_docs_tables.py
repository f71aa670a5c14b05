"""Every results table of the pages is its committed results file's."""
import json
import re
import os.path as osp
import shutil
import sys

import pytest

from gskd_mm.analysis.results_pages import (PAGES, STEP_COSTS, render_page,
                                            stale_tables, step_costs_table)
from gskd_mm.analysis.step_cost import matched_iters

from helpers import run_with_deadline

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'misc', 'gen_docs_tables.py')


def test_check_passes_on_the_repository():
    result = run_with_deadline([sys.executable, TOOL, '--check'],
                               timeout=300)
    assert result.returncode == 0, result.stdout


def test_every_results_page_has_generated_tables():
    for page in PAGES[1:]:
        with open(osp.join(REPO, page)) as f:
            assert '<!-- generated: ' in f.read(), page


def test_the_top_level_readme_copies_no_result():
    """It links to results: no interval, no mean ± std, no mIoU figure."""
    with open(osp.join(REPO, PAGES[0])) as f:
        text = f.read()
    assert PAGES[0] == 'README.md'
    assert re.search(r'[+-−]\d+\.\d+ \[', text) is None
    assert '±' not in text
    assert re.search(r'\d+\.\d+ mIoU', text) is None
    assert 'projects/gskd_demo/README.md#results' in text


@pytest.fixture
def copy_of_repo(tmp_path):
    """The pages and results files, to tamper with."""
    for path in PAGES + (STEP_COSTS, 'results'):
        source, target = osp.join(REPO, path), tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if osp.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return tmp_path


def test_check_names_a_tampered_table(copy_of_repo):
    page = 'projects/gskd_demo/docs/compute_plan.md'
    path = copy_of_repo / page
    text = path.read_text()
    start = text.index('<!-- generated: demo_compute/gains -->')
    cell = text.index('| CWD | 150 |', start)
    end = text.index(' |', cell + len('| CWD | 150 |'))
    path.write_text(text[:cell] + '| CWD | 150 | 99.99' + text[end:])
    assert stale_tables(str(copy_of_repo), page) == ['demo_compute/gains']
    result = run_with_deadline(
        [sys.executable, TOOL, '--check', '--root',
         str(copy_of_repo)], timeout=300)
    assert result.returncode == 1
    assert f'{page}: table demo_compute/gains differs' in result.stdout
    # Rendering restores the published table.
    assert render_page(str(copy_of_repo), page) == text


def test_check_catches_a_changed_results_file(copy_of_repo):
    results = copy_of_repo / 'results' / 'demo_study.json'
    data = json.loads(results.read_text())
    data['tables']['methods']['rows'][1][1] = '0.00 ± 0.00'
    results.write_text(json.dumps(data))
    assert stale_tables(str(copy_of_repo), 'projects/gskd_demo/README.md') \
        == ['demo_study/methods']


def test_step_costs_table_follows_the_ratios():
    costs = dict(methods=dict(
        no_kd=dict(ratio=1.0, low=1.0, high=1.0, repeats=4),
        cwd=dict(ratio=1.547, low=1.52, high=1.57, repeats=4)))
    header, row = step_costs_table(costs)
    assert header[1] == 'step cost over no KD [95 % CI]'
    assert row[:3] == ['`cwd`', '1.547 [1.520, 1.570]', '4']
    assert row[3:] == [str(matched_iters(i, 1.547)) for i in (150, 600, 1200)]
