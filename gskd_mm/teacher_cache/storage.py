# Copyright (c) gskd-mm contributors. All rights reserved.
"""The on-disk teacher cache: a manifest, the file list and shards.

Layout of a cache directory::

    manifest.json           what the cache was made from (see
                            :func:`build_manifest`)
    files.json              the training set's ordered file list
    shard_00000/            one completed shard (a directory that exists
        index.json          only once complete: written as
        <recorder>.bin      ``shard_00000.partial`` and renamed)
    shard_00001.partial/    a shard whose pass was killed: redone

Each ``<recorder>.bin`` holds the shard's maps of that recorder back to
back, flat, in the recorder's dtype; ``index.json`` gives, for every image
of the shard and each of its views, the view's geometry and, per recorder,
the offset (in elements), the shape (C, h, w) and, for int8, the scale of
the map. Maps are read through ``numpy.memmap``: the cache is never loaded
whole.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = [
    'CACHE_FORMAT', 'TeacherCacheError', 'MissingTeacherCacheError',
    'StaleTeacherCacheError', 'TeacherCache', 'ShardWriter',
    'build_manifest', 'compare_manifests', 'config_digest',
    'file_list_digest', 'sha256_file', 'cache_command'
]

#: Version of the layout above; a cache of another version is refused.
CACHE_FORMAT = 1
MANIFEST = 'manifest.json'
FILES = 'files.json'
#: Results of tools/analysis_tools/cache_fidelity.py, if it ran.
FIDELITY = 'fidelity.json'
#: Storage dtypes of a recorder's maps.
DTYPES = {'fp16': np.float16, 'fp32': np.float32, 'int8': np.int8}
#: Config keys that do not change what a teacher with loaded weights
#: computes (its initialisation), left out of the config digest.
_INIT_KEYS = ('init_cfg', 'pretrained')


class TeacherCacheError(RuntimeError):
    """A teacher cache that cannot serve this run."""


class MissingTeacherCacheError(TeacherCacheError, FileNotFoundError):
    """No cache (or an unfinished one) where the run looks for it."""


class StaleTeacherCacheError(TeacherCacheError):
    """A cache made from another teacher, checkpoint, dataset or recorder
    set than the run's."""


def cache_command(root: str, config: Optional[str] = None) -> str:
    """The command that makes (or completes) the cache at ``root``.

    Args:
        root (str): The cache directory.
        config (str, optional): The recipe's config file. Defaults to None
            (written ``CONFIG``).

    Returns:
        str: A shell command.
    """
    return (f'python tools/cache_teacher.py {config or "CONFIG"} '
            f'--out {root}')


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks.

    Args:
        path (str): The file.
        chunk (int): Bytes per read. Defaults to 1 MiB.

    Returns:
        str: The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def file_list_digest(files: Sequence[str]) -> str:
    """The sha256 of an ordered file list (one name a line).

    Args:
        files (Sequence[str]): The dataset's files, in dataset order.

    Returns:
        str: The hex digest.
    """
    return hashlib.sha256('\n'.join(files).encode()).hexdigest()


def _without_init(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_init(v)
            for k, v in node.items() if k not in _INIT_KEYS
        }
    if isinstance(node, (list, tuple)):
        return [_without_init(v) for v in node]
    return node


def config_digest(cfg: dict) -> str:
    """The sha256 of a model config, its initialisation keys left out.

    ``init_cfg`` and ``pretrained`` only say how weights start: a teacher
    with loaded weights computes the same with any of them, and the
    checkpoint's own digest is compared separately.

    Args:
        cfg (dict): A model config.

    Returns:
        str: The hex digest.
    """
    text = json.dumps(_without_init(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def build_manifest(mode: str, teacher: dict, checkpoint: Optional[dict],
                   files: Sequence[str], scales: Sequence[float],
                   flips: Sequence[Optional[str]], recorders: Dict[str, dict],
                   shard_size: int, **extra) -> dict:
    """What a cache is made from, as its ``manifest.json`` holds it.

    Args:
        mode (str): ``'dense'`` or ``'replay'``.
        teacher (dict): The teacher's model config.
        checkpoint (dict, optional): ``path`` and ``sha256`` of the teacher's
            weights (``sha256`` None where only a URL is known), or None
            for a teacher at its initialisation.
        files (Sequence[str]): The training set's files, in order.
        scales (Sequence[float]): The ``RandomResize`` ratios of the cached
            views.
        flips (Sequence[str | None]): The flips of the cached views (None:
            not flipped).
        recorders (dict): Per teacher recorder: ``type``, ``source``,
            ``dtype`` (``'fp16'``, ``'fp32'`` or ``'int8'``).
        shard_size (int): Images per shard.
        **extra: Other entries (e.g. ``resize``).

    Returns:
        dict: The manifest.
    """
    from gskd_mm.version import __version__
    for name, rec in recorders.items():
        if rec['dtype'] not in DTYPES:
            raise ValueError(
                f'recorder {name!r}: dtype {rec["dtype"]!r} is not one of '
                f'{sorted(DTYPES)}')
    num_shards = (len(files) + shard_size - 1) // shard_size
    return dict(
        format=CACHE_FORMAT,
        package_version=__version__,
        mode=mode,
        teacher=dict(digest=config_digest(teacher)),
        checkpoint=checkpoint,
        files=dict(digest=file_list_digest(files), count=len(files)),
        scales=[float(s) for s in scales],
        flips=list(flips),
        recorders=recorders,
        shard_size=shard_size,
        num_shards=num_shards,
        **extra)


def _recorder_key(rec: dict) -> tuple:
    return rec.get('type'), rec.get('source')


def compare_manifests(found: dict,
                      expected: dict,
                      keys: Iterable[str] = ('format', 'mode', 'teacher',
                                             'checkpoint', 'files',
                                             'recorders', 'replay')
                      ) -> List[str]:
    """The differences between a cache's manifest and a run's.

    Recorders compare by name, type and source (not dtype: any dtype can
    serve). A checkpoint compares by sha256 where both have one, else by
    path.

    Args:
        found (dict): The cache's manifest.
        expected (dict): The run's (:func:`build_manifest`, or a partial
            dict with the keys to compare).
        keys (Iterable[str]): The entries to compare.

    Returns:
        list[str]: One line per difference, empty if none.
    """
    diffs = []
    for key in keys:
        if key not in expected:
            continue
        have, want = found.get(key), expected[key]
        if key == 'recorders':
            have = {n: _recorder_key(r) for n, r in (have or {}).items()}
            want = {n: _recorder_key(r) for n, r in want.items()}
        elif key == 'checkpoint' and have and want:
            if have.get('sha256') and want.get('sha256'):
                have, want = have['sha256'], want['sha256']
            else:
                have, want = have.get('path'), want.get('path')
        if have != want:
            what = dict(
                teacher='teacher config (digest)',
                checkpoint='teacher checkpoint',
                files='training file list (digest, count)',
                recorders='teacher recorder set (name: type, source)',
                mode='cache mode',
                replay='replayed views (num_views, seed)',
                format='cache format').get(key, key)
            diffs.append(f'{what}: the cache has {have}, this run has '
                         f'{want}')
    return diffs


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, obj: Any) -> None:
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def shard_dir(root: str, shard: int) -> str:
    """The directory of a completed shard."""
    return osp.join(root, f'shard_{shard:05d}')


class ShardWriter:
    """Write one shard of a cache; it counts as done once :meth:`close` ran.

    Maps go to ``shard_XXXXX.partial/`` (removed first if a killed pass
    left one) and the directory is renamed to ``shard_XXXXX`` at the end,
    so a shard is either complete or redone.

    Args:
        root (str): The cache directory.
        shard (int): The shard's number.
        dtypes (dict[str, str]): Storage dtype per recorder.
    """

    def __init__(self, root: str, shard: int, dtypes: Dict[str,
                                                          str]) -> None:
        self.final = shard_dir(root, shard)
        self.tmp = self.final + '.partial'
        if osp.isdir(self.tmp):
            shutil.rmtree(self.tmp)
        os.makedirs(self.tmp)
        self.dtypes = dict(dtypes)
        self.files = {
            name: open(osp.join(self.tmp, f'{name}.bin'), 'wb')
            for name in self.dtypes
        }
        self.offsets = {name: 0 for name in self.dtypes}
        self.images: Dict[str, List[dict]] = {}

    def add(self, index: int, view: dict, maps: Dict[str,
                                                     np.ndarray]) -> None:
        """Store one view of one image.

        Args:
            index (int): The image's index in the file list.
            view (dict): The view's geometry (``scale``, ``flip``,
                ``img_shape``, ``scale_factor``).
            maps (dict[str, np.ndarray]): Per recorder, its (C, h, w) map.
        """
        if set(maps) != set(self.dtypes):
            raise KeyError(f'maps of {sorted(maps)}, the shard stores '
                           f'{sorted(self.dtypes)}')
        entry = dict(view, maps={})
        for name, array in maps.items():
            array = np.asarray(array, dtype=np.float32)
            if array.ndim != 3:
                raise ValueError(f'recorder {name!r}: a (C, h, w) map per '
                                 f'view, got shape {array.shape}')
            scale = None
            if self.dtypes[name] == 'int8':
                peak = float(np.abs(array).max())
                scale = peak / 127 if peak > 0 else 1.0
                stored = np.clip(np.rint(array / scale), -127,
                                 127).astype(np.int8)
            else:
                stored = array.astype(DTYPES[self.dtypes[name]])
            self.files[name].write(np.ascontiguousarray(stored).tobytes())
            entry['maps'][name] = dict(
                offset=self.offsets[name], shape=list(array.shape),
                scale=scale)
            self.offsets[name] += stored.size
        self.images.setdefault(str(index), []).append(entry)

    def close(self) -> None:
        """Write the index and mark the shard complete."""
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        _write_json(
            osp.join(self.tmp, 'index.json'),
            dict(dtypes=self.dtypes, images=self.images))
        if osp.isdir(self.final):
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)


class TeacherCache:
    """Read a teacher cache: its manifest, file list and memory-mapped maps.

    Opening reads the manifest, the file list and every shard's index (a
    few entries per image); maps are memory-mapped on first use, per
    process.

    Args:
        root (str): The cache directory.
        config (str, optional): The recipe's config, named in the error
            of a missing cache. Defaults to None.

    Raises:
        MissingTeacherCacheError: No manifest, or shards missing; the
            message gives the command that makes them.
    """

    def __init__(self, root: str, config: Optional[str] = None) -> None:
        self.root = root
        manifest = osp.join(root, MANIFEST)
        if not osp.isfile(manifest):
            raise MissingTeacherCacheError(
                f'no teacher cache at {root} (no {MANIFEST}): make it with '
                f'`{cache_command(root, config)}`')
        self.manifest = _read_json(manifest)
        if self.manifest.get('format') != CACHE_FORMAT:
            raise StaleTeacherCacheError(
                f'the teacher cache at {root} has format '
                f'{self.manifest.get("format")}, this version reads '
                f'{CACHE_FORMAT}: make it again with '
                f'`{cache_command(root, config)}` into an empty directory')
        self.files: List[str] = _read_json(osp.join(root, FILES))
        missing = [
            s for s in range(self.manifest['num_shards'])
            if not osp.isdir(shard_dir(root, s))
        ]
        if missing:
            raise MissingTeacherCacheError(
                f'the teacher cache at {root} is unfinished: '
                f'{len(missing)} of {self.manifest["num_shards"]} shards '
                f'missing (first: {missing[0]}); complete it with '
                f'`{cache_command(root, config)}` (it resumes)')
        self.views: Dict[int, List[dict]] = {}
        self.dtypes: Dict[int, Dict[str, str]] = {}
        for s in range(self.manifest['num_shards']):
            index = _read_json(osp.join(shard_dir(root, s), 'index.json'))
            for image, views in index['images'].items():
                for view in views:
                    view['shard'] = s
                self.views[int(image)] = views
            self.dtypes[s] = index['dtypes']
        self._maps: Dict[tuple, np.memmap] = {}
        self._by_name = {}
        for i, name in enumerate(self.files):
            self._by_name.setdefault(osp.basename(name), []).append(i)

    @property
    def recorders(self) -> Dict[str, dict]:
        """The cached recorders (manifest entries)."""
        return self.manifest['recorders']

    def __len__(self) -> int:
        return len(self.files)

    def measured_fidelity(self) -> Optional[str]:
        """What tools/analysis_tools/cache_fidelity.py measured on this
        cache (its overall argmax agreement and KL), if it ran."""
        path = osp.join(self.root, FIDELITY)
        if not osp.isfile(path):
            return None
        overall = _read_json(path).get('all', {})
        parts = [
            f'{k} {v:.4g}' for k, v in overall.items()
            if 'agreement' in k or 'KL' in k or 'cosine' in k
        ]
        return (f'{", ".join(parts)} over {overall.get("samples")} '
                'training samples')

    def check(self, expected: dict, what: str = 'this run') -> None:
        """Refuse a cache made from anything else than ``expected``.

        Args:
            expected (dict): The run's manifest entries to compare
                (:func:`compare_manifests`).
            what (str): The run, in the message. Defaults to 'this run'.

        Raises:
            StaleTeacherCacheError: Naming every difference.
        """
        diffs = compare_manifests(self.manifest, expected)
        if diffs:
            raise StaleTeacherCacheError(
                f'the teacher cache at {self.root} does not fit {what}:\n  '
                + '\n  '.join(diffs) +
                f'\nmake a cache for it with `{cache_command(self.root)}` '
                'into another directory (teacher_cache.root), or use the '
                'teacher, checkpoint and dataset this cache was made with')

    def index_of(self, img_path: str, hint: Optional[int] = None) -> int:
        """The file-list index of a training image.

        Args:
            img_path (str): The sample's ``img_path``.
            hint (int, optional): Its ``sample_idx``, tried first.

        Returns:
            int: The index.

        Raises:
            StaleTeacherCacheError: The image is not in the cache's list.
        """
        path = img_path.replace(os.sep, '/')
        if hint is not None and 0 <= hint < len(self.files) and \
                path.endswith(self.files[hint]):
            return hint
        for i in self._by_name.get(osp.basename(path), []):
            if path.endswith(self.files[i]):
                return i
        raise StaleTeacherCacheError(
            f'{img_path} is not in the teacher cache at {self.root} '
            f'({len(self.files)} files, e.g. {self.files[0]}): the cache was '
            f'made for another dataset; make one for this one with '
            f'`{cache_command(self.root)}` into another directory')

    def read(self, view: dict, recorder: str,
             rows: Optional[np.ndarray] = None) -> np.ndarray:
        """One cached map, or some of its rows, as float32.

        Args:
            view (dict): An entry of :attr:`views`.
            recorder (str): The recorder.
            rows (np.ndarray, optional): Row indices to read (only those
                are read from disk). Defaults to None (all).

        Returns:
            np.ndarray: (C, h, w) or (C, len(rows), w), float32.
        """
        shard = view['shard']
        key = (shard, recorder)
        if key not in self._maps:
            dtype = DTYPES[self.dtypes[shard][recorder]]
            self._maps[key] = np.memmap(
                osp.join(shard_dir(self.root, shard), f'{recorder}.bin'),
                dtype=dtype,
                mode='r')
        entry = view['maps'][recorder]
        c, h, w = entry['shape']
        flat = self._maps[key]
        array = flat[entry['offset']:entry['offset'] + c * h * w].reshape(
            c, h, w)
        if rows is not None:
            array = array[:, rows]
        array = np.array(array, dtype=np.float32)  # a copy, writable
        if entry.get('scale') is not None:
            array = array * np.float32(entry['scale'])
        return array
