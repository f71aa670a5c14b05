# Copyright (c) gskd-mm contributors. All rights reserved.
"""The demo's teacher cache: the cached methods (``<method>_cached``).

A cached method trains from the library's dense teacher cache
(:mod:`gskd_mm.teacher_cache`, ``CachedTeacherDistill``) instead of running
the teacher. The demo makes each cache once per teacher, data and recipe
with the library's cache pass (what ``tools/cache_teacher.py`` runs), in
its cache directory (:func:`cache_root`), and records the pass's one-off
cost beside it (:data:`PASS_FILE`).

The demo's own pipeline only flips (horizontally and vertically) at the
training scale, so a dense cache of that one scale and both flips holds
every view a training crop can be: the cut targets are the online
teacher's (stored in fp32, they are equal up to float rounding of the
interpolation weights).
"""
import hashlib
import json
import os.path as osp
import time
from typing import Dict

from mmengine.config import Config
from mmengine.logging import print_log

from gskd_mm.teacher_cache import sha256_file
from gskd_mm.teacher_cache.cache_pass import run_cache_pass
from gskd_mm.teacher_cache.fidelity import use_teacher_cache

from .dataset import FORMAT_VERSION, default_cache_dir

#: The cost of the pass that made a cache, written into it by the demo.
PASS_FILE = 'demo_pass.json'
#: Storage dtype of the demo's caches: fp32, so that the targets are the
#: online teacher's (fp16 rounds them).
CACHE_DTYPE = 'fp32'
LOGGER = 'current'


def cache_root(teacher_ckpt: str, generate_cfg: dict, config: str) -> str:
    """Where the demo keeps the cache of a teacher, dataset and recipe.

    Args:
        teacher_ckpt (str): The teacher's checkpoint.
        generate_cfg (dict): Generation parameters of the dataset.
        config (str): The online recipe's config file name.

    Returns:
        str: ``<cache>/demo_teacher_cache/<teacher sha256>-<data>/<recipe>``
        (the first 16 hex digits of each digest).
    """
    data = hashlib.sha256(
        json.dumps(dict(generate_cfg, format_version=FORMAT_VERSION),
                   sort_keys=True).encode()).hexdigest()
    return osp.join(default_cache_dir(), 'demo_teacher_cache',
                    f'{sha256_file(teacher_ckpt)[:16]}-{data[:16]}',
                    osp.splitext(osp.basename(config))[0])


def make_cache(cfg: Config, root: str) -> Dict[str, float]:
    """Make the dense cache of an online recipe (once), or find it made.

    The pass runs the library's code (``run_cache_pass``: the training
    scale, both flips of the demo's pipeline, fp32) on one thread; its
    CPU and wall time are written to :data:`PASS_FILE` in the cache and
    logged. A pass stopped before the end resumes (the library keeps the
    finished shards); a cache of another teacher, recorder set or file list
    in ``root`` is refused by the library.

    Args:
        cfg (Config): The online recipe, its ``teacher_ckpt`` set.
        root (str): The cache directory (:func:`cache_root`).

    Returns:
        dict: ``cpu_s`` and ``wall_s`` of the pass, ``images``, and
        ``made`` (whether this call ran it).
    """
    done = osp.join(root, PASS_FILE)
    if osp.isfile(done):
        with open(done) as f:
            return dict(json.load(f), made=False)
    cpu, wall = time.process_time(), time.perf_counter()
    run_cache_pass(cfg, out=root, dtype=CACHE_DTYPE)
    with open(osp.join(root, 'files.json')) as f:
        images = len(json.load(f))
    cost = dict(
        cpu_s=time.process_time() - cpu,
        wall_s=time.perf_counter() - wall,
        images=images)
    with open(done, 'w') as f:
        json.dump(cost, f, indent=2)
    print_log(
        f'Teacher cache {root}: {images} images, the pass took '
        f'{cost["cpu_s"]:.1f} s of CPU ({cost["wall_s"]:.1f} s wall), once '
        'for this teacher, data and recipe', logger=LOGGER)
    return dict(cost, made=True)


def cached_config(cfg: Config, root: str) -> Config:
    """The online recipe ``cfg`` switched to the dense cache at ``root``
    (the library's ``use_teacher_cache``)."""
    return use_teacher_cache(cfg, root, mode='dense')
