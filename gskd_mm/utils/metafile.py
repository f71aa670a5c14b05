# Copyright (c) gskd-mm contributors. All rights reserved.
"""The model-zoo metafile of the recipes (``configs/gskd/metafile.yml``),
generated from the recipes themselves (``tools/misc/gen_metafile.py``).

Each recipe names its student (first ``_base_``), its teacher
(``_base_/teachers/``) and its method (``_base_/methods/``); the metafile
says the same in OpenMMLab's format, with the GSKD authors' published
figures where they published one.
"""
import ast
import glob
import os.path as osp
from typing import Dict, List

import yaml
from mmengine.config import Config

__all__ = ['METHOD_LOSSES', 'recipe_bases', 'recipe_metafile',
           'metafile_text']

#: The losses of each method base (``configs/gskd/_base_/methods``).
METHOD_LOSSES = {
    'gskd.py': 'GSKD',
    'dist.py': 'DIST',
    'dist_aux.py': 'DIST',
    'dist_gskd.py': 'DIST + GSKD',
    'dist_gskd_aux.py': 'DIST + GSKD',
    'dist_gskd_row_t1_aux.py': 'DIST + GSKD-row-t1',
    'dist_gskd_row_t1_bal_aux.py': 'DIST + GSKD-row-t1 (balanced)',
    'cwd.py': 'CWD + KD + adversarial',
    'cwd_gskd.py': 'CWD + KD + adversarial + GSKD',
    'cwd_gskd_row_t1_bal.py':
    'CWD + KD + adversarial + GSKD-row-t1 (balanced)',
    'cirkd.py': 'CIRKD',
    'cirkd_gskd.py': 'CIRKD + GSKD',
    'cirkd_gskd_row_t1_bal.py': 'CIRKD + GSKD-row-t1 (balanced)',
}
#: The dataset of each recipe, by the last part of its name.
DATASETS = {
    'cityscapes': 'Cityscapes',
    'ade20k': 'ADE20K',
    'voc12aug': 'Pascal VOC 2012 aug',
    'coco-stuff164k': 'COCO-Stuff 164k',
}
#: The GSKD authors' published Cityscapes val mIoU, by recipe.
AUTHORS_MIOU = {
    'cirkd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024':
    76.38,
    'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-'
    '512x1024': 78.17,
}
AUTHORS_NOTE = ('published by the GSKD authors (their code and models), not '
                'reproduced here')
COLLECTION = {
    'Name': 'GSKD',
    'Metadata': {
        'Training Data': list(DATASETS.values()),
        'Training Techniques': ['Knowledge Distillation'],
    },
    'README': 'configs/gskd/README.md',
    'Code': {
        'URL': 'https://github.com/MaryAhn/GSKD'
    },
}


def recipe_bases(path: str) -> List[str]:
    """The ``_base_`` list of a recipe, as written in it.

    Args:
        path (str): The recipe.

    Returns:
        list[str]: Its bases.
    """
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(
                node.targets[0], 'id', None) == '_base_':
            return [ast.literal_eval(e) for e in node.value.elts]
    raise ValueError(f'{path} has no _base_ list')


def _entry(path: str, config_dir: str) -> Dict:
    """The metafile entry of one recipe."""
    name = osp.basename(path)[:-3]
    student, teacher_base, method = recipe_bases(path)[:3]
    if not teacher_base.startswith('./_base_/teachers/') or \
            not method.startswith('./_base_/methods/'):
        raise ValueError(
            f'{name}: the bases must be the student, a teacher of '
            '_base_/teachers/ and a method of _base_/methods/, in this '
            'order')
    if student.startswith('./'):
        student = f'configs/gskd/{student[2:]}'
    teacher = Config.fromfile(osp.join(config_dir, teacher_base))
    dataset = name.split('_')[-1].rsplit('-', 1)[0]
    entry = {
        'Name': name,
        'In Collection': COLLECTION['Name'],
        'Metadata': {
            'Losses': METHOD_LOSSES[osp.basename(method)],
            'Training Data': DATASETS[dataset],
            'Student': {
                'Config': student
            },
            'Teacher': {
                'Config': teacher.teacher.cfg_path,
                'Weights': teacher.teacher_ckpt
            },
        },
    }
    if name in AUTHORS_MIOU:
        entry['Results'] = [{
            'Task': 'Semantic Segmentation',
            'Dataset': DATASETS[dataset],
            'Metrics': {
                'mIoU': AUTHORS_MIOU[name]
            },
            'Notes': AUTHORS_NOTE,
        }]
    entry['Config'] = f'configs/gskd/{name}.py'
    return entry


def recipe_metafile(config_dir: str) -> Dict:
    """The metafile of every recipe in a directory.

    Args:
        config_dir (str): ``configs/gskd``.

    Returns:
        dict: ``Collections`` and ``Models``, one model per recipe, by name.
    """
    recipes = sorted(glob.glob(osp.join(config_dir, '*.py')))
    return {
        'Collections': [COLLECTION],
        'Models': [_entry(path, config_dir) for path in recipes],
    }


class _IndentedDumper(yaml.SafeDumper):
    """YAML with list items indented under their key, as OpenMMLab's
    metafiles are written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):
        return super().increase_indent(flow, False)


def metafile_text(meta: Dict) -> str:
    """The metafile's YAML text.

    Args:
        meta (dict): As :func:`recipe_metafile` returns.

    Returns:
        str: The text.
    """
    return yaml.dump(
        meta,
        Dumper=_IndentedDumper,
        sort_keys=False,
        allow_unicode=True,
        width=1000)
