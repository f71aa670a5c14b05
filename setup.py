# Copyright (c) gskd-mm contributors. All rights reserved.
"""Packaging of gskd-mm.

Besides the ``gskd_mm`` package this installs ``gskd_mm_compat.pth`` and
the small module it imports (see ``gskd_mm_compat.py``), which keep MMRazor
1.0.0 importable on torch 2.x and MMSeg importable on mmcv-lite in every
interpreter of the environment, ``mim train mmrazor`` included, and it puts
``configs/`` and ``tools/`` under ``gskd_mm/.mim`` as OpenMMLab packages do,
so that a non-editable install ships them too
(``<site-packages>/gskd_mm/.mim/configs``).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools')
PTH_NAME = 'gskd_mm_compat.pth'


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'gskd_mm', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Read requirement lines, following ``-r`` includes."""
    reqs = []
    with open(osp.join(HERE, 'requirements', fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line.startswith('-r '):
                reqs += parse_requirements(line[3:].strip())
            elif line:
                reqs.append(line)
    return reqs


def add_mim_extension() -> None:
    """Expose configs/ and tools/ as ``gskd_mm/.mim/{configs,tools}``.

    Editable installs get symlinks (edits show up at once); wheels and
    sdists get copies, which is what a non-editable install ships.
    """
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py', 'install'} & set(
            sys.argv):
        mode = 'copy'
    else:
        return
    mim_root = osp.join(HERE, 'gskd_mm', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim_root, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_root), dst)
        else:
            shutil.copytree(src, dst)


class BuildPyWithPth(build_py):
    """Ship the compat ``.pth`` file at the top of site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(
            osp.join(HERE, PTH_NAME),
            osp.join(self.build_lib, PTH_NAME),
            preserve_mode=False)


class EditableWheelWithPth(editable_wheel):
    """Ship the compat ``.pth`` file in editable installs too.

    Editable wheels do not contain build_py's output; files written into the
    unpacked wheel here (where setuptools puts its namespace ``.pth``) are.
    """

    def _install_namespaces(self, installation_dir: str,
                            pth_prefix: str) -> None:
        super()._install_namespaces(installation_dir, pth_prefix)
        shutil.copy(
            osp.join(HERE, PTH_NAME), osp.join(installation_dir, PTH_NAME))


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='gskd-mm',
        version=get_version(),
        description='Global Structural Similarity Knowledge Distillation '
        'for semantic segmentation, as an MMRazor/MMSegmentation extension',
        long_description=readme(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.8',
        packages=find_packages(include=['gskd_mm', 'gskd_mm.*']),
        include_package_data=True,
        py_modules=['gskd_mm_compat'],
        package_data={'gskd_mm': ['.mim/**/*']},
        cmdclass={
            'build_py': BuildPyWithPth,
            'editable_wheel': EditableWheelWithPth
        },
        install_requires=parse_requirements('runtime.txt'),
        extras_require={'tests': parse_requirements('tests.txt')},
        zip_safe=False,
        classifiers=[
            'Programming Language :: Python :: 3',
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
        ],
    )
