# Copyright (c) gskd-mm contributors. All rights reserved.
"""Keep MMRazor 1.0.0 importable on torch 2.x.

MMRazor 1.0.0's quantization modules use torch APIs that torch 2 removed,
and ``import mmrazor.models`` (hence ``register_all_modules()`` and
MMRazor's own ``tools/train.py``) imports them eagerly, so nothing of MMRazor
imports at all. Distillation never touches quantization.

This module installs an import hook for exactly those quantization modules:
each is first executed as usual, and only if that raises is it replaced by a
placeholder whose every attribute raises an ``ImportError`` that names the
missing feature when it is *used*. On a torch where MMRazor's code works,
nothing changes. No file in site-packages is edited.

It is activated by ``gskd_mm_mmrazor_compat.pth`` (installed with gskd-mm,
so it also works inside ``mim train mmrazor``) and by ``import gskd_mm``.
The ``.pth`` imports only this small module, never torch: interpreter
start-up stays as fast as before. Set ``GSKD_MM_MMRAZOR_COMPAT=0`` to turn
the hook off.
"""
import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

ENV_SWITCH = 'GSKD_MM_MMRAZOR_COMPAT'

# The modules whose import fails on torch 2.x, parents before children.
# Everything that imports them gets placeholders for the names it asks for.
GUARDED_MODULES = frozenset({
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


def _unavailable_message(module: str, name: str, error: BaseException) -> str:
    import torch  # already imported by MMRazor when this is reached
    return (f'{module}.{name} is unavailable: MMRazor 1.0.0 quantization '
            f'does not support torch {torch.__version__} ({type(error).__name__}'
            f': {error}). gskd-mm keeps the rest of MMRazor importable; '
            'quantization needs torch < 2.0 or an MMRazor release that '
            f'supports torch 2 (set {ENV_SWITCH}=0 to see the original '
            'import error).')


class _UnavailableMeta(type):
    """Metaclass of the placeholders: touching them raises."""

    def __call__(cls, *args, **kwargs):
        raise ImportError(cls._message)

    def __getattr__(cls, attr: str):
        if attr.startswith('__'):
            raise AttributeError(attr)
        raise ImportError(cls._message)


def _placeholder(module: str, name: str, error: BaseException) -> type:
    # A class, so that MMRazor code subclassing it or using it in
    # isinstance checks still imports; instantiating or calling raises.
    return _UnavailableMeta(
        name, (), {
            '_message': _unavailable_message(module, name, error),
            '__module__': module,
        })


def _make_placeholder_module(module: ModuleType,
                             error: BaseException) -> None:
    """Let every missing name of ``module`` resolve to a placeholder."""
    module.__gskd_mm_import_error__ = error

    def __getattr__(name: str) -> type:
        if name.startswith('__'):
            raise AttributeError(name)
        return _placeholder(module.__name__, name, error)

    module.__getattr__ = __getattr__
    # A star import cannot list names that were never defined.
    module.__all__ = []


class _GuardedLoader(importlib.abc.Loader):
    """Run the real loader; on failure turn the module into placeholders."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        except Exception as error:  # noqa: B902  any failure means unusable
            _make_placeholder_module(module, error)


class _GuardedFinder(importlib.abc.MetaPathFinder):
    """Hand out guarded loaders for ``GUARDED_MODULES`` only."""

    def find_spec(self,
                  fullname: str,
                  path: Optional[Sequence[str]] = None,
                  target: Optional[ModuleType] = None):
        if fullname not in GUARDED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _GuardedLoader(spec.loader)
        return spec


def install() -> bool:
    """Install the import hook once per interpreter.

    Returns:
        bool: Whether the hook is active.
    """
    switch = os.environ.get(ENV_SWITCH, '1').lower()
    if switch in ('0', 'false', 'no', 'off'):
        return False
    if not any(isinstance(f, _GuardedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _GuardedFinder())
    return True


install()
