# Copyright (c) gskd-mm contributors. All rights reserved.
"""A non-editable install ships the package, the configs and the hook.

It does not require the distribution ``mmcv`` either: pip would compile
that over an installed mmcv-lite.

The wheel is built from a copy of the source tree (building in place
would replace the editable install's ``gskd_mm/.mim`` symlinks by copies)
and installed into a folder of its own, which a fresh interpreter then
uses as a site directory.
"""
import ast
import glob
import importlib
import json
import os
import os.path as osp
import shutil
import sys
import zipfile

import pytest

from helpers import run_with_deadline


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
RECIPE = ('gskd/dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
          '4xb4-40k_cityscapes-512x1024.py')
TIMEOUT = 300  # seconds, per subprocess


def run(*cmd: str) -> str:
    result = run_with_deadline(cmd, TIMEOUT)
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


@pytest.mark.slow
def test_wheel_install_ships_configs_tools_and_startup_hook(tmp_path):
    source = str(tmp_path / 'source')
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns('.git', '.venv', 'work_dirs', '.mim',
                                      '*.egg-info', 'build', 'dist',
                                      '__pycache__', '.pytest_cache'))
    wheels = str(tmp_path / 'wheels')
    run(sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--wheel-dir', wheels, source)
    (wheel, ) = [osp.join(wheels, n) for n in os.listdir(wheels)]
    with zipfile.ZipFile(wheel) as f:
        names = set(f.namelist())
        (metadata, ) = [n for n in names if n.endswith('.dist-info/METADATA')]
        requires = [
            line.split(':', 1)[1].strip()
            for line in f.read(metadata).decode().splitlines()
            if line.startswith('Requires-Dist:')
        ]
    assert any(r.startswith('mmsegmentation') for r in requires), requires
    assert not [r for r in requires if r.startswith('mmcv')], requires
    for name in ('gskd_mm_compat.pth', 'gskd_mm_compat.py',
                 'gskd_mm/__init__.py', f'gskd_mm/.mim/configs/{RECIPE}',
                 'gskd_mm/.mim/tools/train.py'):
        assert name in names, name

    site_dir = str(tmp_path / 'site')
    run(sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
        '--target', site_dir, wheel)
    # A fresh interpreter with the install as a site directory (its .pth
    # processed), ahead of the editable checkout.
    code = f'''
import os.path as osp, site, sys
site.addsitedir({site_dir!r})
assert 'gskd_mm_compat' in sys.modules  # the .pth ran ...
assert 'torch' not in sys.modules  # ... and imported nothing heavy
sys.path.insert(0, {site_dir!r})
import gskd_mm
assert gskd_mm.__file__.startswith({site_dir!r}), gskd_mm.__file__
from mmengine.config import Config
configs = osp.join(osp.dirname(gskd_mm.__file__), '.mim', 'configs')
for name in ({RECIPE!r}, ):
    cfg = Config.fromfile(osp.join(configs, name))
    assert cfg.model.type == 'EvalTeacherDistill', name
    assert 'loss_gskd' in cfg.model.distiller.distill_losses, name
print('installed configs load')
'''
    assert 'installed configs load' in run(sys.executable, '-c', code)


def test_the_package_imports_no_scaffolding():
    """``import gskd_mm`` (what every recipe's ``custom_imports`` does)
    imports the library only: not the test and benchmark helpers of
    ``gskd_mm.testing``, nor inference and figures (``apis``,
    ``visualization``), and ``models/losses`` holds registered losses
    alone."""
    code = '''
import sys
import gskd_mm
from mmrazor.registry import MODELS
for scaffolding in ('gskd_mm.testing', 'gskd_mm.apis',
                    'gskd_mm.visualization'):
    assert not [m for m in sys.modules if m.startswith(scaffolding)], \
        scaffolding
import gskd_mm.models.losses as losses
for name in losses.__all__:
    assert MODELS.get(name) is getattr(losses, name), name
import json, pkgutil
print(json.dumps(dict(
    losses=losses.__all__,
    modules=[m.name for m in pkgutil.iter_modules(losses.__path__)])))
'''
    found = json.loads(run(sys.executable, '-c', code).splitlines()[-1])
    # Every module of models/losses defines registered losses (one, or a
    # pair such as the hinge losses), and nothing else.
    for name in found['modules']:
        module = importlib.import_module(f'gskd_mm.models.losses.{name}')
        assert [
            loss for loss in found['losses']
            if getattr(getattr(module, loss, None), '__module__',
                       None) == module.__name__
        ], f'models/losses/{name}.py defines no registered loss'


def package_imports(path: str) -> set:
    """The gskd_mm subpackages a module imports (relative or absolute)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    parts = osp.relpath(path, REPO)[:-3].split(osp.sep)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[:len(parts) - node.level]
            name = '.'.join(base + ([node.module] if node.module else []))
        elif isinstance(node, ast.ImportFrom):
            name = node.module
        elif isinstance(node, ast.Import):
            name = node.names[0].name
        else:
            continue
        if name.startswith('gskd_mm.'):
            found.add(name.split('.')[1])
    return found


def test_analysis_imports_only_models_and_utils():
    """As ``mmengine.analysis``: the engine's hooks and the tools import it,
    so it imports none of them."""
    paths = glob.glob(osp.join(REPO, 'gskd_mm', 'analysis', '*.py'))
    assert paths
    for path in paths:
        assert package_imports(path) <= {'analysis', 'models', 'utils'}, path


def test_tools_are_thin():
    """Tools parse arguments and call the package: no function of a tool is
    over 80 lines."""
    tools = glob.glob(osp.join(REPO, 'tools', '**', '*.py'), recursive=True)
    for path in tools:
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 80, f'{path}: {node.name} is {length} lines'
