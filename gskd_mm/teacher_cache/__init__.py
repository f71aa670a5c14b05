# Copyright (c) gskd-mm contributors. All rights reserved.
"""A teacher cache: run a recipe's teacher once over its training set,
store what its recorders record, and serve each training crop's targets
from disk (:class:`~gskd_mm.models.CachedTeacherDistill`).

``docs/en/user_guides/teacher_cache.md`` describes its use. The cache pass
(``cache_pass``: ``tools/cache_teacher.py``), the fidelity measure
(``fidelity``: ``tools/analysis_tools/cache_fidelity.py``) and the
storage and cost accounting (``budget``) are imported on use, e.g.
``from gskd_mm.teacher_cache.cache_pass import run_cache_pass``.
"""
from .settings import (CACHED_TYPES, ONLINE_TYPES, cache_settings,
                       check_dataset, checkpoint_identity, dataset_files,
                       default_flips, default_scales, online_config,
                       recorder_specs, resize_spec, teacher_config,
                       train_pipeline)
from .storage import (CACHE_FORMAT, MissingTeacherCacheError, ShardWriter,
                      StaleTeacherCacheError, TeacherCache,
                      TeacherCacheError, build_manifest, cache_command,
                      compare_manifests, config_digest, file_list_digest,
                      sha256_file)

__all__ = [
    'CACHED_TYPES', 'ONLINE_TYPES', 'CACHE_FORMAT',
    'MissingTeacherCacheError', 'ShardWriter', 'StaleTeacherCacheError',
    'TeacherCache', 'TeacherCacheError', 'build_manifest', 'cache_command',
    'cache_settings', 'check_dataset', 'checkpoint_identity',
    'compare_manifests', 'config_digest', 'dataset_files', 'default_flips',
    'default_scales', 'file_list_digest', 'online_config', 'recorder_specs',
    'resize_spec', 'sha256_file', 'teacher_config', 'train_pipeline'
]
