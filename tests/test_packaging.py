# Copyright (c) gskd-mm contributors. All rights reserved.
"""A non-editable install ships the package, the configs and the hook.

It does not require the distribution ``mmcv`` either: pip would compile
that over an installed mmcv-lite.

The wheel is built from a copy of the source tree (building in place
would replace the editable install's ``gskd_mm/.mim`` symlinks by copies)
and installed into a folder of its own, which a fresh interpreter then
uses as a site directory.
"""
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
    ``gskd_mm.testing``, and ``models/losses`` holds registered losses
    alone."""
    code = '''
import sys
import gskd_mm
from mmrazor.registry import MODELS
assert not [m for m in sys.modules if m.startswith('gskd_mm.testing')]
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
