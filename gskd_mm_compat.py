# Copyright (c) gskd-mm contributors. All rights reserved.
"""Keep the OpenMMLab stack importable on modern torch and on mmcv-lite.

Two parts of the stack fail at import time although gskd-mm never uses them:

* MMRazor 1.0.0's quantization modules use torch APIs that torch 2 removed,
  and ``import mmrazor.models`` (hence ``register_all_modules()`` and
  MMRazor's own ``tools/train.py``) imports them eagerly.
* ``mmcv.ops`` imports every op, and most of them load mmcv's compiled
  extension ``mmcv._ext``, which ``mmcv-lite`` does not ship (and which has
  no prebuilt wheel for a recent torch). ``mmseg.models`` and
  ``mmseg.utils`` import ``mmcv.ops`` for ``point_sample``, plain torch.

This module installs an import hook for exactly those modules: each is first
executed as usual, and only if that raises is it replaced by a placeholder
whose every missing name raises an ``ImportError`` naming the feature and the
fix when it is *used*. A module that imports keeps everything it defines
(``mmcv.ops.point_sample`` is the real function on mmcv-lite), and where the
whole stack works (a full mmcv, a torch MMRazor supports) nothing changes.
No file in site-packages is edited.

It is activated by ``gskd_mm_compat.pth`` (installed with gskd-mm, so it
also works inside ``mim train mmrazor``) and by ``import gskd_mm``. The
``.pth`` imports only this small module, never torch or mmcv: interpreter
start-up stays as fast as before. Set ``GSKD_MM_COMPAT=0`` to turn the hook
off (the former name ``GSKD_MM_MMRAZOR_COMPAT=0`` works too).
"""
# Only what the interpreter has loaded at start-up anyway: importlib.abc,
# for one, pulls in importlib.resources and pathlib (tens of ms). The
# finder and loader below follow its protocols without subclassing it.
import os
import sys
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Sequence

ENV_SWITCH = 'GSKD_MM_COMPAT'
# The switch's name before the hook covered mmcv, still honoured.
LEGACY_ENV_SWITCH = 'GSKD_MM_MMRAZOR_COMPAT'

# MMRazor's modules whose import fails on torch 2.x, parents before
# children. Everything that imports them gets placeholders for the names it
# asks for.
MMRAZOR_GUARDED_MODULES = frozenset({
    'mmrazor.engine.runner.quantization_loops',
    'mmrazor.models.algorithms.quantization',
    'mmrazor.models.algorithms.quantization.mm_architecture',
    'mmrazor.models.fake_quants',
    'mmrazor.models.fake_quants.base',
    'mmrazor.models.fake_quants.lsq',
    'mmrazor.models.fake_quants.torch_fake_quants',
    'mmrazor.models.observers',
    'mmrazor.models.observers.base',
    'mmrazor.models.observers.lsq',
    'mmrazor.models.observers.torch_observers',
    'mmrazor.models.quantizers',
    'mmrazor.models.quantizers.academic_quantizer',
    'mmrazor.models.quantizers.base',
    'mmrazor.models.quantizers.native_quantizer',
    'mmrazor.models.quantizers.openvino_quantizer',
    'mmrazor.models.quantizers.tensorrt_quantizer',
    'mmrazor.structures.quantization',
    'mmrazor.structures.quantization.backend_config',
    'mmrazor.structures.quantization.qconfig',
})
# Every op module of mmcv (not ``mmcv.ops`` itself, whose own code must
# run: it is what imports the ops).
MMCV_OPS_PREFIX = 'mmcv.ops.'


def _mmrazor_message(module: str, name: str, error: BaseException) -> str:
    import torch  # already imported by MMRazor when this is reached
    return (f'{module}.{name} is unavailable: MMRazor 1.0.0 quantization '
            f'does not support torch {torch.__version__} '
            f'({type(error).__name__}: {error}). gskd-mm keeps the rest of '
            'MMRazor importable; quantization needs torch < 2.0 or an '
            'MMRazor release that supports torch 2 (set '
            f'{ENV_SWITCH}=0 to see the original import error).')


def _mmcv_message(module: str, name: str, error: BaseException) -> str:
    import mmcv  # already imported: this is one of its submodules
    return (f'{module}.{name} is unavailable: it needs the compiled ops of '
            f'mmcv, which this mmcv {mmcv.__version__} does not have '
            f'({type(error).__name__}: {error}); mmcv-lite ships none. '
            'Install the full mmcv built for this torch: '
            '`make setup MMCV=full` or '
            '`bash tools/build_mmcv.sh` in a gskd-mm checkout, or '
            '`mim install mmcv==2.1.0` (see "mmcv-lite or the full mmcv" in '
            f"gskd-mm's README; set {ENV_SWITCH}=0 to see the original "
            'import error).')


def _message_for(fullname: str) -> Optional[Callable[..., str]]:
    """The error message builder of a guarded module, None if unguarded."""
    if fullname in MMRAZOR_GUARDED_MODULES:
        return _mmrazor_message
    if fullname.startswith(MMCV_OPS_PREFIX):
        return _mmcv_message
    return None


class _UnavailableMeta(type):
    """Metaclass of the placeholders: touching them raises."""

    def __call__(cls, *args, **kwargs):
        raise ImportError(cls._message)

    def __getattr__(cls, attr: str):
        if attr.startswith('__'):
            raise AttributeError(attr)
        raise ImportError(cls._message)


def _make_placeholder_module(module: ModuleType, error: BaseException,
                             message: Callable[..., str]) -> None:
    """Let every missing name of ``module`` resolve to a placeholder."""
    module.__gskd_mm_import_error__ = error
    placeholders: Dict[str, type] = {}

    def __getattr__(name: str) -> type:
        if name.startswith('__'):
            raise AttributeError(name)
        if name not in placeholders:
            # A class, so that code subclassing it or using it in
            # isinstance checks still imports; calling it raises.
            placeholders[name] = _UnavailableMeta(
                name, (), {
                    '_message': message(module.__name__, name, error),
                    '__module__': module.__name__,
                })
        return placeholders[name]

    module.__getattr__ = __getattr__
    # A star import cannot list names that were never defined.
    module.__all__ = []


class _GuardedLoader:
    """Run the real loader; on failure turn the module into placeholders.

    Args:
        loader (importlib.abc.Loader): The loader the import system found.
        message (Callable): Builds the error of a placeholder from the
            module's name, the missing name and the import error.
    """

    def __init__(self, loader: Any, message: Callable[..., str]) -> None:
        self.loader = loader
        self.message = message

    def __getattr__(self, name: str):
        # get_source, is_package, ...: whatever the real loader offers.
        if name == 'loader':  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        except Exception as error:  # noqa: B902  any failure means unusable
            _make_placeholder_module(module, error, self.message)
        else:
            # A module that imports ends up exactly as without the hook.
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader


class _GuardedFinder:
    """Hand out guarded loaders for the guarded modules only."""

    def find_spec(self,
                  fullname: str,
                  path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None):
        message = _message_for(fullname)
        if message is None:
            return None
        # The spec the import system would use without this finder.
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        spec.loader = _GuardedLoader(spec.loader, message)
        return spec


def is_enabled() -> bool:
    """Whether the environment leaves the hook on.

    Returns:
        bool: False if ``GSKD_MM_COMPAT`` (or the former
        ``GSKD_MM_MMRAZOR_COMPAT``) is ``0``, ``false``, ``no`` or ``off``.
    """
    off = ('0', 'false', 'no', 'off')
    return not any(
        os.environ.get(switch, '1').lower() in off
        for switch in (ENV_SWITCH, LEGACY_ENV_SWITCH))


def install() -> bool:
    """Install the import hook once per interpreter.

    Returns:
        bool: Whether the hook is active.
    """
    if not is_enabled():
        return False
    if not any(isinstance(f, _GuardedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _GuardedFinder())
    return True


install()
