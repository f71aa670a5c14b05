# Copyright (c) gskd-mm contributors. All rights reserved.
"""tools/analysis_tools/benchmark_step.py on the CPU, at a small crop."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from gskd_mm.analysis import step_benchmark as bench

from helpers import run_with_deadline

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'gskd')
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_step.py')
RECIPE = osp.join(
    CONFIG_DIR, 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py')


def test_sibling_recipes_are_the_same_pair_and_dataset():
    found = bench.sibling_recipes(
        RECIPE, ['student', 'dist', 'dist-gskd', 'cwd-gskd'])
    assert found['student'] == found['dist-gskd'] == RECIPE
    assert osp.basename(found['dist']) == (
        'dist_deeplabv3_r101-d8_deeplabv3_r18-d8_'
        '4xb4-40k_cityscapes-512x1024.py')
    # CWD + GSKD has its own schedule part (4xb2-80k).
    assert osp.basename(found['cwd-gskd']) == (
        'cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
        '4xb2-80k_cityscapes-512x1024.py')
    with pytest.raises(FileNotFoundError, match='kd recipe'):
        bench.sibling_recipes(RECIPE, ['kd'])


def test_only_cityscapes_recipes(tmp_path):
    ade = osp.join(
        CONFIG_DIR, 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
        '4xb4-80k_ade20k-512x512.py')
    with pytest.raises(ValueError, match='ADE20KDataset'):
        bench.load_recipe(ade, str(tmp_path), 2, (64, 64))


def test_load_recipe_keeps_the_real_crop_unless_asked(tmp_path):
    real = bench.load_recipe(RECIPE, str(tmp_path), 2, None)
    assert real.model.architecture.data_preprocessor.size == (512, 1024)
    assert real.train_dataloader.batch_size == 2
    assert real.model.teacher_ckpt is None
    small = bench.load_recipe(RECIPE, str(tmp_path), 2, (64, 128))
    assert small.model.architecture.data_preprocessor.size == (64, 128)
    assert Config.fromfile(RECIPE).model.teacher_ckpt  # as shipped


@pytest.mark.slow
def test_tool_times_steps_and_teacher_on_cpu(tmp_path):
    out = tmp_path / 'steps.json'
    result = run_with_deadline([
        TOOL, RECIPE, '--methods', 'student', 'dist-gskd', '--precisions',
        'fp32', 'bf16', '--crop', '64', '128', '--batch', '2', '--repeats',
        '1', '--teacher', '--out',
        str(out)
    ],
                               timeout=900,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    assert '| dist-gskd |' in result.stdout
    assert 'Teacher forward' in result.stdout
    report = json.loads(out.read_text())
    assert report['batch'] == 2 and report['crop'] == [64, 128]
    for method in ('student', 'dist-gskd'):
        for precision in ('fp32', 'bf16'):
            row = report['steps'][method][precision]
            assert row['seconds'] > 0 and row['peak_mb'] > 0
    distill = report['steps']['dist-gskd']['fp32']['losses']
    assert {'distill.loss_dist', 'distill.loss_gskd'} <= set(distill)
    assert not any(
        k.startswith('distill.')
        for k in report['steps']['student']['fp32']['losses'])
    assert report['teacher']['loss_mode'] > 0
    assert report['teacher']['tensor_mode'] > 0


@pytest.mark.slow
def test_tool_refuses_a_batch_of_one():
    result = run_with_deadline([TOOL, RECIPE, '--batch', '1'],
                               timeout=300,
                               python=True,
                               cwd=REPO)
    assert result.returncode != 0
    assert 'at least 2' in result.stdout


@pytest.mark.slow
def test_balancer_benchmark_times_plain_and_measured_steps(tmp_path):
    out = tmp_path / 'balancer.json'
    tool = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark_balancer.py')
    result = run_with_deadline([
        tool, '--settings', 'demo', 'cityscapes', '--crop', '64', '128',
        '--steps', '1', '--out',
        str(out)
    ],
                               timeout=900,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    report = json.loads(out.read_text())
    for setting in ('demo', 'cityscapes'):
        times = report[setting]
        assert times['interval'] == 50 and times['steps'] == 1
        assert 0 < times['measurement'] < times['measured']
        assert times['plain'] > 0
        assert times['overhead_at_default_interval'] == pytest.approx(
            (times['measured'] - times['plain']) / (50 * times['plain']))
