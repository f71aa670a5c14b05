# Copyright (c) gskd-mm contributors. All rights reserved.
"""Every recipe holds the values of the fidelity table of its README."""
import ast
import fnmatch
import glob
import os.path as osp
import re
from typing import Any, Dict, List

import pytest
import yaml

from gskd_mm.utils.metafile import (METHOD_LOSSES, metafile_text,
                                    recipe_bases, recipe_metafile)

from helpers import load_config

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
README = osp.join(CONFIG_DIR, 'README.md')
RECIPES = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
COLUMNS = ['recipes', 'setting', 'config key', 'authors', 'where', 'ours',
           'why it differs']
# Settings no recipe may leave out of the table (any one of alternatives).
REQUIRED = ('optimizer.lr', 'optimizer.weight_decay',
            ('optimizer.momentum', 'optimizer.betas'), '.power', '.eta_min',
            'train_cfg.max_iters', 'train_dataloader.batch_size',
            'model.type')


def fidelity_rows() -> List[Dict[str, str]]:
    """The rows of the README's fidelity table, cells stripped of `."""
    with open(README) as f:
        text = f.read()
    section = text.split('\n## Fidelity\n', 1)[1]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    assert header == COLUMNS, header
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r'(?<!\\)\|', line.strip('|'))]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


def unquote(cell: str) -> str:
    return cell[1:-1] if cell.startswith('`') and cell.endswith('`') \
        else cell


def lookup(cfg: Any, key: str) -> Any:
    """``cfg`` at a dotted key; list indices are numbers."""
    node = cfg
    for part in key.split('.'):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(normalise(v) for v in value)
    return value


def matches(row: Dict[str, str], name: str) -> bool:
    """Whether a row's patterns name a recipe: one of its patterns matches
    and none of its ``!`` patterns does."""
    patterns = unquote(row['recipes']).split()
    return any(
        fnmatch.fnmatchcase(name, p) for p in patterns
        if not p.startswith('!')) and not any(
            fnmatch.fnmatchcase(name, p[1:]) for p in patterns
            if p.startswith('!'))


ROWS = fidelity_rows()


def test_the_table_has_rows_for_every_family():
    assert len(ROWS) > 50
    for prefix in ('gskd_', 'dist_', 'dist-gskd_', 'cwd_', 'cwd-gskd_',
                   'cirkd_', 'cirkd-gskd_', 'dist-gskd-row-t1_',
                   'dist-gskd-row-t1-bal_', 'cwd-gskd-row-t1-bal_',
                   'cirkd-gskd-row-t1-bal_'):
        assert any(
            matches(row, next(osp.basename(p) for p in RECIPES
                              if osp.basename(p).startswith(prefix)))
            and row['config key'] for row in ROWS), prefix


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_holds_the_table(path):
    name = osp.basename(path)
    cfg = load_config(path)
    checked = []
    for row in ROWS:
        if not matches(row, name) or not row['config key']:
            continue
        key = unquote(row['config key'])
        expected = ast.literal_eval(unquote(row['ours']))
        try:
            value = lookup(cfg, key)
        except (KeyError, IndexError, TypeError) as error:
            raise AssertionError(f'{name} has no {key} ({row["setting"]})'
                                 ) from error
        assert normalise(value) == normalise(expected), (
            f'{name}: {key} is {value!r}, the fidelity table says '
            f'{expected!r} ({row["setting"]})')
        checked.append(key)
    for required in REQUIRED:
        options = required if isinstance(required, tuple) else (required, )
        assert any(o in key for o in options for key in checked), (
            f'the fidelity table has no {required} row for {name}')


def test_every_method_base_has_its_losses_named():
    methods = sorted(
        osp.basename(p)
        for p in glob.glob(osp.join(CONFIG_DIR, '_base_', 'methods', '*.py')))
    assert methods == sorted(METHOD_LOSSES)


def test_metafile_is_generated_from_the_recipes():
    with open(osp.join(CONFIG_DIR, 'metafile.yml')) as f:
        committed = f.read()
    assert committed == metafile_text(recipe_metafile(CONFIG_DIR)), (
        'configs/gskd/metafile.yml is out of date: run '
        'python tools/misc/gen_metafile.py')


def test_metafile_entries_are_their_recipes():
    """Every entry says what its recipe is: the student config is the
    recipe's first base, the teacher config and weights those the recipe
    distils from (its teacher base), the losses those of its method base."""
    with open(osp.join(CONFIG_DIR, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    models = {m['Name']: m for m in meta['Models']}
    names = [osp.basename(p)[:-3] for p in RECIPES]
    assert sorted(models) == names, (
        'configs/gskd/metafile.yml and the recipes differ: '
        f'{sorted(set(names) ^ set(models))}')
    repo = osp.dirname(osp.dirname(CONFIG_DIR))
    for name, model in models.items():
        assert model['Config'] == f'configs/gskd/{name}.py'
        path = osp.join(repo, model['Config'])
        bases = recipe_bases(path)
        student, teacher_base, method = bases[0], bases[1], bases[2]
        if student.startswith('./'):
            student = f'configs/gskd/{student[2:]}'
        assert model['Metadata']['Student']['Config'] == student, name
        assert teacher_base.startswith('./_base_/teachers/'), name
        cfg = load_config(path)
        teacher = model['Metadata']['Teacher']
        assert teacher['Weights'] == cfg.model.teacher_ckpt, name
        assert teacher['Config'] == cfg.model.teacher.cfg_path, name
        assert method.startswith('./_base_/methods/'), name
        assert model['Metadata']['Losses'] == METHOD_LOSSES[osp.basename(
            method)], name
        # The only figures are the authors', and say so.
        for result in model.get('Results', []):
            assert 'published by the GSKD authors' in result['Notes']
