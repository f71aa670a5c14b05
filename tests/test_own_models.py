# Copyright (c) gskd-mm contributors. All rights reserved.
"""The guide "Your own models and data", block by block.

Its Python blocks are written where their first line says, into a copy of
``configs/gskd``; its commands run on the shrunk recipe (CPU crop, a tiny
dataset in the guide's layout, 2 iterations).
"""
import glob
import os
import os.path as osp
import re
import shutil
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from PIL import Image

from gskd_mm.testing import region_sample

from helpers import run_with_deadline, shrink_recipe, train_one_step


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
GUIDE = osp.join(REPO, 'docs', 'en', 'user_guides', 'own_models.md')


def guide() -> str:
    with open(GUIDE) as f:
        return f.read()


def python_blocks() -> Dict[str, str]:
    """The guide's Python blocks, by the path on their first line."""
    blocks = re.findall(r'```python\n# (\S+)\n(.*?)```', guide(),
                        re.S)
    return {path: code for path, code in blocks}


def commands() -> List[str]:
    (block, ) = re.findall(r'```bash\n(.*?)```', guide(), re.S)
    return [line for line in block.splitlines() if line.strip()]


@pytest.fixture
def configs(tmp_path) -> str:
    """A copy of the repository's configs with the guide's files added."""
    root = tmp_path / 'repo'
    shutil.copytree(
        osp.join(REPO, 'configs', 'gskd'), str(root / 'configs' / 'gskd'))
    for path, code in python_blocks().items():
        (root / path).write_text(f'# {path}\n{code}')
    return str(root)


def test_the_guide_has_its_blocks():
    assert sorted(python_blocks()) == [
        'configs/gskd/_base_/teachers/segformer_mit-b2_cityscapes-'
        '1024x1024.py',
        'configs/gskd/cwd-gskd_segformer_mit-b2_segformer_mit-b0_'
        '8xb1-160k_cityscapes-1024x1024.py',
        'configs/gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
        'mydata.py',
    ]
    assert [c.split()[1] for c in commands()] == [
        'tools/train.py', 'tools/model_converters/distill_to_student.py'
    ]


def test_teacher_base(configs):
    path = osp.join(configs, 'configs', 'gskd', '_base_', 'teachers',
                    'segformer_mit-b2_cityscapes-1024x1024.py')
    cfg = Config.fromfile(path)
    zoo = get_config(cfg.teacher.cfg_path, pretrained=True)
    assert cfg.teacher_ckpt == zoo.model_path
    assert cfg.teacher_channels == zoo.model.decode_head.channels


@pytest.mark.slow
def test_swapped_teacher_and_student_train(configs):
    path = osp.join(
        configs, 'configs', 'gskd', 'cwd-gskd_segformer_mit-b2_'
        'segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py')
    cfg = Config.fromfile(path)
    projector = cfg.model.distiller.connectors.gskd_projector
    assert (projector.in_channels, projector.out_channels) == (256, 256)
    torch.manual_seed(0)
    model, losses = train_one_step(shrink_recipe(cfg))
    assert type(model.teacher.backbone).__name__ == 'MixVisionTransformer'
    assert model.teacher.backbone.num_layers == [3, 4, 6, 3]  # MiT-B2
    assert losses['distill.loss_cwd_feat'] > 0
    assert all(torch.isfinite(v) for v in losses.values())


def make_mydata(root: str, num_classes: int) -> None:
    """The guide's layout: {img_dir,ann_dir}/{train,val}/*.png."""
    rng = np.random.default_rng(0)
    for split, count in (('train', 4), ('val', 2)):
        for i in range(count):
            image, label = region_sample((64, 96),
                                         [*range(num_classes), 255], rng)
            for folder, array in (('img_dir', image), ('ann_dir', label)):
                os.makedirs(osp.join(root, folder, split), exist_ok=True)
                Image.fromarray(array).save(
                    osp.join(root, folder, split, f'{i:04d}.png'))


@pytest.mark.slow
def test_your_dataset_trains_and_exports_its_student(configs, tmp_path,
                                                     monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    name = 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_mydata.py'
    cfg = Config.fromfile(osp.join(configs, 'configs', 'gskd', name))
    num_classes = len(cfg.classes)
    data_root = str(tmp_path / 'mydata')
    make_mydata(data_root, num_classes)
    shrink_recipe(cfg, data_root=data_root)
    # The teacher is the zoo architecture with your classes.
    assert cfg.model.teacher.decode_head.num_classes == num_classes
    assert cfg.model.teacher.backbone.depth == 101

    # The guide's commands, on the shrunk recipe, for 2 iterations.
    config = str(tmp_path / name)
    cfg.dump(config)
    work_dir = str(tmp_path / 'work_dirs' / 'mydata')
    schedule = [
        '--cfg-options', 'train_dataloader.batch_size=2',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2'
    ]
    train, convert = commands()
    for line, extra in ((train, schedule), (convert, [])):
        args = line.split()[1:]
        args = [
            config if a.endswith(name) else a.replace(
                'work_dirs/mydata', work_dir).replace('iter_40000', 'iter_2')
            for a in args
        ]
        result = run_with_deadline([*args, *extra],
                                   600,
                                   python=True,
                                   cwd=REPO)
        assert result.returncode == 0, result.stdout[-4000:]
    assert not glob.glob(str(tmp_path / 'torch_home' / '**' / '*.pth'),
                         recursive=True), 'downloaded weights'

    from mmseg.apis import inference_model, init_model
    student_dir = osp.join(work_dir, 'student')
    student = init_model(
        osp.join(student_dir, 'student.py'),
        osp.join(student_dir, 'student.pth'),
        device='cpu')
    assert tuple(student.dataset_meta['classes']) == tuple(cfg.classes)
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    result = inference_model(student, image)
    assert result.seg_logits.data.shape == (num_classes, 64, 96)
