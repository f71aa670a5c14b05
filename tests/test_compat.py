# Copyright (c) gskd-mm contributors. All rights reserved.
"""The stack imports on torch 2.x and mmcv-lite, with and without gskd_mm.

The MMRazor part runs against the installed stack. The mmcv part runs both
against the installed mmcv (mmcv-lite or the full one: ``make setup`` keeps
either) and against two fake ``mmcv`` trees put ahead of it on the path of a
fresh interpreter, one with and one without a compiled extension, so that
both behaviours are checked whichever mmcv this environment has.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mmengine.utils import digit_version
from mmengine.utils.dl_utils import mmcv_full_available

import gskd_mm_compat as compat

MMRAZOR_TRAIN_PY = os.path.join(
    os.path.dirname(__import__('mmrazor').__file__), '.mim', 'tools',
    'train.py')


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this environment.

    Args:
        code (str): The program.
        **env: Environment variables to set on top of this one's.

    Returns:
        subprocess.CompletedProcess: Its return code, stdout and stderr.
    """
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


@pytest.mark.slow
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


def test_startup_hook_imports_nothing_heavy():
    result = run_python('import sys; print("torch" in sys.modules, '
                        '"mmcv" in sys.modules, '
                        '"gskd_mm_compat" in sys.modules)')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'False', 'True']


@pytest.mark.slow
@pytest.mark.skipif(
    digit_version(torch.__version__) < digit_version('2.0.0'),
    reason='MMRazor imports without help before torch 2.0')
@pytest.mark.parametrize('switch',
                         [compat.ENV_SWITCH, compat.LEGACY_ENV_SWITCH])
def test_switch_off_shows_the_original_failure(switch):
    result = run_python('import mmrazor.models', **{switch: '0'})
    assert result.returncode != 0
    assert 'Error' in result.stderr


@pytest.mark.slow
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


def test_mmcv_ops_on_the_installed_mmcv():
    import mmcv.ops
    import mmseg.models  # noqa: F401
    from mmseg.utils import mask_classification
    # point_sample is plain torch: real on mmcv-lite too, and what MMSeg
    # imported.
    assert mask_classification.point_sample is mmcv.ops.point_sample
    assert mmcv.ops.point_sample.__module__ == 'mmcv.ops.point_sample'
    points = mmcv.ops.point_sample(
        torch.arange(16.).view(1, 1, 4, 4), torch.full((1, 1, 2), 0.5))
    assert points.shape == (1, 1, 1)
    assert torch.allclose(points, torch.tensor(7.5))
    placeholders = [
        name for name, module in list(sys.modules.items())
        if name.startswith('mmcv.') and '__gskd_mm_import_error__' in vars(
            module)
    ]
    if mmcv_full_available():
        # The full mmcv: nothing is replaced, ops are real.
        assert placeholders == []
        assert issubclass(mmcv.ops.DeformConv2d, torch.nn.Module)
        return
    assert 'mmcv.ops.deform_conv' in placeholders
    assert 'mmcv.ops.point_sample' not in placeholders
    with pytest.raises(ImportError) as error:
        mmcv.ops.DeformConv2d(4, 4, 3)
    message = str(error.value)
    assert 'mmcv.ops.deform_conv.DeformConv2d is unavailable' in message
    assert 'mmcv._ext' in message  # the original error ...
    assert 'make setup MMCV=full' in message  # ... and the fix
    with pytest.raises(ImportError, match='sigmoid_focal_loss'):
        mmcv.ops.sigmoid_focal_loss(torch.zeros(1, 2), torch.zeros(1))


def write_fake_mmcv(root: Path, compiled: bool) -> None:
    """Write a fake ``mmcv`` with one plain and one compiled op.

    Args:
        root (Path): The folder to write ``mmcv/`` into.
        compiled (bool): Whether it has its compiled extension ``_ext``, as
            the full mmcv has and mmcv-lite has not.
    """
    files = {
        '__init__.py': "__version__ = '2.1.0'\n",
        'ops/__init__.py': '''
            from .plain import plain_op
            from .compiled import CompiledOp, compiled_op
        ''',
        'ops/plain.py': '''
            def plain_op(x):
                return x + 1
        ''',
        'ops/compiled.py': '''
            from .. import _ext  # what mmcv's ext_loader does

            def compiled_op(x):
                return _ext.op(x)

            class CompiledOp:
                pass
        ''',
    }
    if compiled:
        files['_ext.py'] = '''
            def op(x):
                return x * 2
        '''
    for name, text in files.items():
        path = root / 'mmcv' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


INSPECT_FAKE_MMCV = '''
import sys
import mmcv.ops
assert mmcv.__file__.startswith(sys.argv[1]), mmcv.__file__
print('plain', mmcv.ops.plain_op(1))
for name in ('mmcv.ops', 'mmcv.ops.plain', 'mmcv.ops.compiled'):
    module = sys.modules[name]
    assert module.__spec__.loader is module.__loader__
    print(name, '__gskd_mm_import_error__' in vars(module),
          type(module.__loader__).__name__)
try:
    print('compiled', mmcv.ops.compiled_op(1))
    print('class', mmcv.ops.CompiledOp().__class__.__name__)
except ImportError as error:
    print('ImportError:', error)
'''


def run_with_fake_mmcv(root: Path, **env) -> subprocess.CompletedProcess:
    """Run ``INSPECT_FAKE_MMCV`` with the fake mmcv in ``root`` first.

    Args:
        root (Path): Holds the fake ``mmcv/``.
        **env: Environment variables to set on top of this one's.

    Returns:
        subprocess.CompletedProcess: Its return code, stdout and stderr.
    """
    return subprocess.run(
        [sys.executable, '-c', INSPECT_FAKE_MMCV,
         str(root)],
        capture_output=True,
        text=True,
        cwd=str(root),
        env={
            **os.environ, 'PYTHONPATH': str(root),
            **env
        },
        timeout=300)


def test_full_mmcv_is_left_alone(tmp_path):
    write_fake_mmcv(tmp_path, compiled=True)
    result = run_with_fake_mmcv(tmp_path)
    assert result.returncode == 0, result.stderr
    # Real modules, with exactly the loader the import system finds
    # without the hook.
    assert result.stdout.splitlines() == [
        'plain 2', 'mmcv.ops False SourceFileLoader',
        'mmcv.ops.plain False SourceFileLoader',
        'mmcv.ops.compiled False SourceFileLoader', 'compiled 2',
        'class CompiledOp'
    ]


def test_mmcv_without_ops_gets_placeholders(tmp_path):
    write_fake_mmcv(tmp_path, compiled=False)
    result = run_with_fake_mmcv(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        'plain 2', 'mmcv.ops False SourceFileLoader',
        'mmcv.ops.plain False SourceFileLoader',
        'mmcv.ops.compiled True _GuardedLoader'
    ]
    # Failing at first use, naming the op, the cause and the fix.
    assert lines[4].startswith(
        'ImportError: mmcv.ops.compiled.compiled_op is unavailable: it '
        'needs the compiled ops of mmcv, which this mmcv 2.1.0 does not have'
        ' (ImportError: cannot import name \'_ext\'')
    assert 'make setup MMCV=full' in lines[4]
    assert 'mim install mmcv==2.1.0' in lines[4]

    result = run_with_fake_mmcv(tmp_path, **{compat.ENV_SWITCH: '0'})
    assert result.returncode != 0
    assert "ImportError: cannot import name '_ext'" in result.stderr
