# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo (``make demo``) runs end to end in its smallest setting.

``projects/gskd_demo/demo.py`` runs as the README runs it, in a
subprocess, with a few iterations, two seeds, a small generated dataset
and the cache and outputs in a temporary directory; then its table,
paired statistics, figures, teacher cache and the GSKD visualisation tool
are checked.
"""
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Tuple

import numpy as np
import pytest
from PIL import Image

from gskd_mm.apis import (default_annotation, gskd_view, init_distiller,
                          load_sample)
from projects.gskd_demo.gskd_demo import (MethodKey, matched_methods,
                                          method_spec, read_costs)
from projects.gskd_demo.gskd_demo.figures import read_scalars

from helpers import run_with_deadline

PROJECT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(osp.dirname(PROJECT))
DEMO = osp.join(PROJECT, 'demo.py')
VISUALIZE = osp.join(REPO, 'tools', 'visualize_gskd.py')
PAIR = 'deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py'
DIST_GSKD = osp.join(PROJECT, 'configs', f'dist-gskd_{PAIR}')
# CWD and CWD + GSKD are left out to keep the test short; the CIRKD pair
# and the DIST pair stand for the paired comparisons, DIST + GSKD-row-t1
# balanced for the sweep's variants and the balancer.
METHODS = [
    'no_kd', 'dist', 'dist_gskd', 'cirkd', 'cirkd_gskd',
    'dist_gskd-row-t1-bal'
]
FIGURES = ['loss_curves', 'miou', 'similarity', 'predictions', 'balancer']
SMALL = [
    '--iters', '6', '--teacher-iters', '40', '--seeds', '2', '--num-train',
    '32', '--num-val', '8', '--batch-size', '4', '--methods', *METHODS
]
# What a run's result holds that does not depend on the process that ran it
# (times and paths aside).
RESULT_KEYS = [
    'miou', 'metrics', 'gap', 'gap_cos', 'gap_proj', 'gap_proj_cos',
    'student_digest', 'data_digest', 'grad_norms', 'gskd_grad_share'
]
TIMEOUT = 900  # seconds, per subprocess
pytestmark = pytest.mark.slow  # a few minutes: the demo's end-to-end runs


def run(cmd: List[str], env: Dict[str, str]) -> str:
    """Run a command (its worker pool killed with it on a timeout); fail
    with its output if it fails."""
    proc = run_with_deadline(cmd, TIMEOUT, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc.stdout


@pytest.fixture(scope='module')
def demo(tmp_path_factory) -> Tuple[str, Dict[str, str], dict, str]:
    """One small demo run: its out dir, environment, results and output."""
    root = tmp_path_factory.mktemp('demo')
    env = dict(os.environ, GSKD_MM_CACHE=str(root / 'cache'))
    out_dir = str(root / 'out')
    output = run(
        [sys.executable, DEMO, *SMALL, '--workers', '1', '--out-dir', out_dir],
        env)
    with open(osp.join(out_dir, 'results.json')) as f:
        results = json.load(f)
    return out_dir, env, results, output


def assert_quiet(output: str) -> None:
    """The demo shows its phases, its progress and its results only."""
    for noise in ('Loads checkpoint', 'init_weights', 'start method',
                  'Warning', 'torch.Size'):
        assert noise not in output, noise


def test_first_run_is_quiet(demo):
    *_, results, output = demo
    assert_quiet(output)
    # Two seeds of every method, no KD at each method's budget among them.
    runs = 2 * len(results['methods'])
    for phase in ('Data:', 'Teacher untrained', 'Teacher: mIoU', f'[1/{runs}]',
                  f'[{runs}/{runs}]', 'Figures ...', '| model |'):
        assert phase in output, phase


def test_workers_give_the_same_runs(demo, tmp_path):
    # Two processes train the runs in any order; every run's numbers equal
    # those of the runs trained one after another in one process.
    _, env, results, _ = demo
    out_dir = str(tmp_path / 'workers')
    output = run(
        [sys.executable, DEMO, *SMALL, '--workers', '2', '--out-dir', out_dir],
        env)
    assert 'done before' not in output
    assert_quiet(output)
    with open(osp.join(out_dir, 'results.json')) as f:
        parallel = json.load(f)
    assert parallel['init_gap'] == results['init_gap']
    for key, method in results['methods'].items():
        runs = parallel['methods'][key]['runs']
        assert [r['seed'] for r in runs] == [0, 1]
        for serial_run, parallel_run in zip(method['runs'], runs):
            for name in RESULT_KEYS:
                assert parallel_run[name] == serial_run[name], (key, name)


def test_compute_matched_runs(demo):
    """No KD at every distillation method's budget (the step cost ratio of
    step_costs.json times the 6 iterations, rounded to 10), compared with
    each method paired by seed; and every method against no KD."""
    _, _, results, output = demo
    costs = read_costs()
    assert results['costs'] == {
        k: costs[MethodKey.parse(k)]
        for k in results['costs']
    }
    matched = matched_methods([MethodKey.parse(k) for k in METHODS], 6,
                              costs)
    assert list(results['methods']) == METHODS + [str(k) for k in matched]
    for key in matched:
        method = results['methods'][str(key)]
        assert key.is_no_kd and method['iters'] == key.iters
        assert method['runs'][0]['iters'] == method['iters']
    kinds = {}
    for d in results['paired'].values():
        kinds.setdefault(d['kind'], set()).add(d['method'])
    assert kinds['kd'] == set(METHODS) - {'no_kd'}
    assert kinds['compute'] == set(METHODS) - {'no_kd'}
    assert '| DIST | ' in output and 'equal compute' in output


def test_table(demo):
    out_dir, _, results, output = demo
    methods = results['methods']
    assert list(methods)[:len(METHODS)] == METHODS
    for key, method in methods.items():
        assert len(method['runs']) == 2
        assert [run['seed'] for run in method['runs']] == [0, 1]
        stats = method['stats']
        assert 0 <= stats['miou']['mean'] <= 100
        assert stats['miou']['std'] is not None
        assert stats['gap']['mean'] > 0  # a student is not its teacher
        assert 0 < stats['gap_cos']['mean'] < 2
        # The projected gap exists where a GSKD projector does.
        has_projector = 'gskd' in key
        assert (stats['gap_proj']['mean'] is not None) == has_projector
        assert (stats['gap_proj_cos']['mean'] is not None) == has_projector
        assert method['wall_s_mean'] > 0 and method['iter_ms'] > 0
        # Only the GSKD recipes spend time in a GSKD loss.
        assert (method['gskd_ms'] > 0) == has_projector
        assert osp.isfile(method['runs'][0]['checkpoint'])
    assert results['init_gap']['kl']['mean'] > 0
    assert results['init_gap']['cos']['mean'] > 0
    assert not results['teacher']['cached']
    assert results['settings']['iters'] == 6
    assert results['dataset']['num_train'] == 32

    # The trained teacher beats its own network untrained, and predicting
    # the majority class everywhere.
    teacher = results['teacher']
    assert 0 <= teacher['untrained_miou'] < 20
    assert teacher['miou'] > teacher['untrained_miou'] + 3
    assert 0 < results['majority_class_miou'] < 20

    with open(osp.join(out_dir, 'results.md')) as f:
        table = f.read()
    for method in methods.values():
        assert f'| student {method["label"]} |' in table
    assert '| DIST + GSKD − DIST |' in table
    assert '| CIRKD + GSKD − CIRKD |' in table
    assert table.strip() in output  # printed at the end too
    # What 2 seeds resolve, and the command of the full study.
    assert 'What 2 seeds resolve (paired 95 % intervals):' in output
    assert 'DIST + GSKD − DIST: mIoU ' in output
    assert '`make study`' in output and 'The full study' in output


def test_balanced_runs_record_their_weights_and_shares(demo):
    """The balanced variant runs the recipe's GSKD with the balancer, whose
    updates the result keeps; other runs have none."""
    _, _, results, _ = demo
    for key, method in results['methods'].items():
        balanced = method_spec(key).balancer is not None
        for run in method['runs']:
            assert (run['balancer'] is not None) == balanced, key
    for run in results['methods']['dist_gskd-row-t1-bal']['runs']:
        # 6 iterations, measured every 5: one update, at iteration 4.
        (update, ) = run['balancer']
        assert update['iter'] == 4 and update['term'] == 'loss_gskd'
        assert update['share'] > 0 and update['weight'] > 0


def test_runs_are_paired_by_seed(demo):
    # Every method of a seed started from the same student and saw the same
    # first batches; different seeds did not.
    _, _, results, _ = demo
    assert results['pairing_check'] == dict(student=True, data=True)
    runs = [m['runs'] for m in results['methods'].values()]
    for what in ('student_digest', 'data_digest'):
        for seed in (0, 1):
            assert len({r[seed][what] for r in runs}) == 1, (what, seed)
        assert runs[0][0][what] != runs[0][1][what], what


def test_paired_differences(demo):
    # The table's paired rows are the per-seed differences of the runs.
    _, _, results, _ = demo
    methods = results['methods']
    paired = {
        key: d
        for key, d in results['paired'].items() if d['kind'] == 'base'
    }
    assert set(paired) == {'dist_gskd', 'cirkd_gskd', 'dist_gskd-row-t1-bal'}
    for gskd, d in paired.items():
        base = d['baseline']
        assert base == gskd.split('_')[0]
        # Base recipes have no projector: no projected difference.
        intervals = d['intervals']
        assert set(intervals) == {'miou', 'gap', 'gap_cos'}
        for metric, interval in intervals.items():
            diffs = [
                a[metric] - b[metric]
                for a, b in zip(methods[gskd]['runs'], methods[base]['runs'])
            ]
            assert interval['n'] == 2
            assert interval['mean'] == pytest.approx(np.mean(diffs))
            assert interval['low'] <= interval['mean'] <= interval['high']


def test_finished_runs_are_not_run_again(demo):
    # The same command on the same out dir (a stopped demo or sweep,
    # resumed) reuses every finished run's stored result.
    out_dir, env, results, _ = demo
    output = run([sys.executable, DEMO, *SMALL, '--out-dir', out_dir], env)
    assert output.count('done before') == 2 * len(results['methods'])
    assert not re.search(r'seed \d+: mIoU', output)  # no run trained again
    with open(osp.join(out_dir, 'results.json')) as f:
        again = json.load(f)
    for key, method in results['methods'].items():
        assert again['methods'][key]['stats'] == method['stats']


def test_figures(demo):
    out_dir, _, results, _ = demo
    assert sorted(results['figures']) == sorted(FIGURES)
    for name in FIGURES:
        path = osp.join(out_dir, f'{name}.png')
        assert results['figures'][name] == path
        assert osp.getsize(path) > 20_000, name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            pixels = np.asarray(image.convert('L'))
        assert min(pixels.shape) > 400, name
        assert pixels.std() > 10, f'{name} is (nearly) blank'


def test_loss_curves_read_every_term(demo):
    # Every loss term the runs logged is there to plot.
    _, _, results, _ = demo
    terms = {
        key: set(read_scalars(method['runs'][0]['scalars'])) - {'iter'}
        for key, method in results['methods'].items()
    }
    assert terms['no_kd'] == {'decode.loss_ce'}
    assert terms['dist_gskd'] == {
        'decode.loss_ce', 'distill.loss_dist', 'distill.loss_gskd'
    }
    assert terms['dist_gskd-row-t1-bal'] == terms['dist_gskd']
    assert terms['cirkd_gskd'] == {
        'decode.loss_ce', 'distill.loss_kd', 'distill.loss_minibatch_p2p',
        'distill.loss_memory_p2p', 'distill.loss_memory_p2r',
        'distill.loss_gskd'
    }


def test_teacher_is_cached(demo, tmp_path):
    # A second run with the same teacher setting reuses its checkpoint.
    out_dir, env, results, _ = demo
    again = str(tmp_path / 'again')
    small = SMALL[:SMALL.index('--methods')]
    output = run([
        sys.executable, DEMO, *small, '--methods', 'no_kd', '--iters', '2',
        '--seeds', '1', '--out-dir', again
    ], env)
    assert 'Teacher: cached' in output
    with open(osp.join(again, 'results.json')) as f:
        second = json.load(f)
    assert second['teacher']['cached']
    assert second['teacher']['miou'] == results['teacher']['miou']
    assert second['teacher']['checkpoint'] == results['teacher']['checkpoint']
    assert not osp.exists(osp.join(again, 'teacher'))  # nothing retrained
    assert list(second['methods']) == ['no_kd']
    assert second['paired'] == {}
    assert 'similarity' not in second['figures']  # no GSKD run to show
    assert 'balancer' not in second['figures']  # no balanced run


def test_visualize_gskd_matches_the_loss(demo, tmp_path):
    out_dir, env, results, _ = demo
    ckpt = results['methods']['dist_gskd']['runs'][0]['checkpoint']
    data_root = osp.join(env['GSKD_MM_CACHE'], 'synthetic_scenes_32-8')
    image = osp.join(data_root, 'img_dir', 'val', 'val_00000.png')

    # The command line tool writes the figure.
    out = str(tmp_path / 'similarity.png')
    # The demo's configs name their dataset by import path from the
    # repository root, which the tools find on PYTHONPATH.
    run([sys.executable, VISUALIZE, DIST_GSKD, ckpt, image, '--out', out],
        dict(env, PYTHONPATH=REPO))
    assert osp.getsize(out) > 20_000

    # What it plots is what GSKDLoss computes for the same draws.
    os.environ['GSKD_MM_CACHE'] = env['GSKD_MM_CACHE']
    try:
        model, cfg = init_distiller(DIST_GSKD, ckpt)
        ann = default_annotation(cfg, image)
        assert ann == osp.join(data_root, 'ann_dir', 'val', 'val_00000.png')
        result = gskd_view(model, load_sample(cfg, image, ann), seed=3)
        labelled = gskd_view(model, load_sample(cfg, image), seed=3)
    finally:
        del os.environ['GSKD_MM_CACHE']
    assert result.loss == pytest.approx(
        result.loss_reference, rel=1e-5, abs=1e-7)
    assert result.loss == pytest.approx(result.desc_kl.mean())
    b = len(result.index)
    assert b == 8 * len(result.classes)  # N = 8 per present class
    assert result.V_t.shape == result.V_s.shape == (b, b)
    # Cosine similarities: unit diagonal, symmetric.
    np.testing.assert_allclose(np.diag(result.V_t), 1, atol=1e-5)
    np.testing.assert_allclose(result.V_s, result.V_s.T, atol=1e-5)
    # S = -1: descriptors of |C| columns, one per sample slot (G = N).
    assert result.desc_t.shape == (8, b, len(result.classes))
    # Every sampled pixel may be sampled (labelled, teacher right there).
    assert not result.pseudo_labels
    assert result.feat_valid.reshape(-1)[result.index].all()

    # Without labels, the teacher's prediction stands in for them.
    assert labelled.pseudo_labels
    assert labelled.loss == pytest.approx(
        labelled.loss_reference, rel=1e-5, abs=1e-7)
