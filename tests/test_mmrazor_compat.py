# Copyright (c) gskd-mm contributors. All rights reserved.
"""The stack imports on torch 2.x, with and without ``import gskd_mm``."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.utils import digit_version

import gskd_mm_mmrazor_compat as compat

MMRAZOR_TRAIN_PY = os.path.join(
    os.path.dirname(__import__('mmrazor').__file__), '.mim', 'tools',
    'train.py')


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this environment."""
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True,
                          env={
                              **os.environ,
                              **env
                          },
                          timeout=300)


def test_gskd_mm_registers_into_mmrazor():
    import gskd_mm  # noqa: F401
    from mmengine.registry import DefaultScope
    from mmrazor.registry import MODELS
    for name in ('GSKDLoss', 'PixelWiseDISTLoss', 'GSKDProjector'):
        assert MODELS.get(name) is not None, name
    # Built as a distiller builds its losses: in MMRazor's scope, whatever
    # default scope an earlier test (or MMSeg) left behind.
    with DefaultScope.overwrite_default_scope('mmrazor'):
        loss = MODELS.build(dict(type='GSKDLoss', num_samples=4))
    assert loss.num_samples == 4


def test_mmrazor_and_mmseg_models_import_in_fresh_interpreter():
    # No gskd_mm import here: the .pth start-up hook alone must do it.
    result = run_python(
        'import mmrazor.models, mmseg.models\n'
        'from mmrazor.utils import register_all_modules\n'
        'register_all_modules()\n'
        'from mmrazor.registry import MODELS\n'
        'assert MODELS.get("SingleTeacherDistill") is not None\n'
        'print("OK")')
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('OK')


def test_startup_hook_does_not_import_torch():
    result = run_python('import sys; print("torch" in sys.modules, '
                        '"gskd_mm_mmrazor_compat" in sys.modules)')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'True']


@pytest.mark.skipif(
    digit_version(torch.__version__) < digit_version('2.0.0'),
    reason='MMRazor imports without help before torch 2.0')
def test_switch_off_shows_the_original_failure():
    result = run_python(
        'import mmrazor.models', **{compat.ENV_SWITCH: '0'})
    assert result.returncode != 0
    assert 'Error' in result.stderr


def test_mmrazor_train_py_gets_past_registration(tmp_path):
    # MMRazor's own tools/train.py imports and registers everything first;
    # a config that does not exist must then be the only complaint.
    assert os.path.isfile(MMRAZOR_TRAIN_PY), MMRAZOR_TRAIN_PY
    result = subprocess.run(
        [sys.executable, MMRAZOR_TRAIN_PY, '--help'],
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'config' in result.stdout
    missing = str(tmp_path / 'missing.py')
    result = subprocess.run([sys.executable, MMRAZOR_TRAIN_PY, missing],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode != 0
    assert 'missing.py' in result.stderr
    assert 'register' not in result.stderr.lower().split('error')[-1]


def test_quantization_placeholder_raises_clear_error():
    import mmrazor.models  # noqa: F401
    from mmrazor.registry import MODELS
    broken = [
        name for name, module in list(sys.modules.items())
        if name.startswith('mmrazor')
        and '__gskd_mm_import_error__' in vars(module)
    ]
    if digit_version(torch.__version__) >= digit_version('2.0.0'):
        assert broken, 'expected MMRazor quantization to need the hook'
    module = sys.modules[broken[0]]
    with pytest.raises(ImportError, match='unavailable.*torch'):
        module.SomeQuantizationApi()
    with pytest.raises(ImportError, match='quantization'):
        module.SomeQuantizationApi.attribute
    # Distillation pieces are real classes.
    assert MODELS.get('ConfigurableDistiller').__module__.startswith(
        'mmrazor.models')
