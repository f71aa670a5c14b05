# Copyright (c) gskd-mm contributors. All rights reserved.
"""Transforms that record where a training crop came from.

MMSeg's ``RandomCrop`` keeps no box, and a teacher cache of full images
(:class:`~gskd_mm.models.CachedTeacherDistill`) needs it to cut each
crop's targets: :class:`RandomCropWithBox` is ``RandomCrop`` that keeps
it, and :class:`RecordTeacherView` gathers the crop's whole geometry into
``results['teacher_view']`` for ``PackSegInputs`` to pack into the data
sample's metainfo (add ``'teacher_view'`` to its ``meta_keys``;
:class:`~gskd_mm.datasets.TeacherViewDataset` does all of this to a
recipe's pipeline).
"""
import hashlib
import random
from typing import List, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmseg.registry import TRANSFORMS

__all__ = [
    'RandomCropWithBox', 'RecordTeacherView', 'ReplayAugmentations',
    'replay_seed'
]


@TRANSFORMS.register_module()
class RandomCropWithBox(BaseTransform):
    """MMSeg's ``RandomCrop`` that records its box.

    Runs MMSeg's ``RandomCrop`` (built on first use, so that importing
    gskd_mm does not import MMSeg's datasets), with the same random draws,
    and adds ``crop_bbox`` (y1, y2, x1, x2), clipped to the image, in the
    coordinates of the image it cropped, and ``crop_after_flip`` (the flip
    direction already applied when it cropped, or None).

    Args:
        crop_size (int | tuple[int, int]): As ``RandomCrop``'s.
        cat_max_ratio (float): As ``RandomCrop``'s. Defaults to 1.
        ignore_index (int): As ``RandomCrop``'s. Defaults to 255.
    """

    def __init__(self,
                 crop_size: Union[int, Sequence[int]],
                 cat_max_ratio: float = 1.,
                 ignore_index: int = 255) -> None:
        self.crop = TRANSFORMS.build(
            dict(
                type='mmseg.RandomCrop',
                crop_size=crop_size,
                cat_max_ratio=cat_max_ratio,
                ignore_index=ignore_index))

    def transform(self, results: dict) -> dict:
        """Crop as ``RandomCrop`` and record the box.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The cropped results with ``crop_bbox``.
        """
        h, w = results['img'].shape[:2]
        # The draws of RandomCrop.transform, which calls crop_bbox once.
        box = self.crop.crop_bbox(results)
        results['img'] = self.crop.crop(results['img'], box)
        for key in results.get('seg_fields', []):
            results[key] = self.crop.crop(results[key], box)
        results['img_shape'] = results['img'].shape[:2]
        y1, y2, x1, x2 = box
        results['crop_bbox'] = (int(y1), int(min(y2, h)), int(x1),
                                int(min(x2, w)))
        results['crop_after_flip'] = results.get(
            'flip_direction') if results.get('flip') else None
        return results


def _unflip_box(box: tuple, size: tuple, direction: str) -> tuple:
    """A box in a flipped image, in the unflipped image's coordinates."""
    y1, y2, x1, x2 = box
    h, w = size
    if direction in ('horizontal', 'diagonal'):
        x1, x2 = w - x2, w - x1
    if direction in ('vertical', 'diagonal'):
        y1, y2 = h - y2, h - y1
    return y1, y2, x1, x2


@TRANSFORMS.register_module()
class RecordTeacherView(BaseTransform):
    """Record a sample's geometry as ``results['teacher_view']``.

    Placed after the geometric transforms (before ``PackSegInputs``), it
    records the image's ``ori_shape``, the resize's ``scale_factor`` (w, h)
    and the resized ``img_shape``, the crop box in the resized image (the
    whole image without a crop), the flip and its direction, the padded
    shape and the image's ``sample_idx`` and ``img_path``, for
    :func:`~gskd_mm.teacher_cache.geometry.sample_view`. A crop drawn
    after a flip is recorded in the unflipped image's coordinates (a crop
    of the flipped image is the flip of that crop).
    """

    def transform(self, results: dict) -> dict:
        """Add ``teacher_view``.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The results with ``teacher_view``.
        """
        ori = tuple(results['ori_shape'][:2])
        factor = tuple(results.get('scale_factor', (1.0, 1.0)))
        resized = (round(ori[0] * factor[1]), round(ori[1] * factor[0]))
        box = results.get('crop_bbox')
        if box is None:
            box = (0, resized[0], 0, resized[1])
        elif results.get('crop_after_flip'):
            box = _unflip_box(box, resized, results['crop_after_flip'])
        flip = bool(results.get('flip', False))
        results['teacher_view'] = dict(
            ori_shape=ori,
            scale_factor=factor,
            img_shape=resized,
            crop_bbox=tuple(int(v) for v in box),
            flip=flip,
            flip_direction=results.get('flip_direction') if flip else None,
            pad_shape=tuple(
                results.get('pad_shape', results['img_shape'])[:2]),
            sample_idx=results.get('sample_idx'),
            img_path=results.get('img_path'))
        return results


def replay_seed(seed: int, index: int, view: int) -> int:
    """The random seed of view ``view`` of image ``index``."""
    digest = hashlib.sha256(f'{seed}:{index}:{view}'.encode()).digest()
    return int.from_bytes(digest[:4], 'little')


def image_digest(img: np.ndarray) -> str:
    """A short digest of an augmented image (its bytes)."""
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()[:16]


@TRANSFORMS.register_module()
class ReplayAugmentations(BaseTransform):
    """Run transforms under one of ``num_views`` fixed draws per image.

    The replay mode of the teacher cache (FKD-style): each image has
    ``num_views`` augmentations, each the draw of the wrapped transforms
    (resize, crop, flip, photometric distortion, ...) under the random
    seed :func:`replay_seed` of (``seed``, the image's ``sample_idx``, the
    view). Each call picks a view at random (the loader's own random
    state, which is restored afterwards) and runs the transforms under its
    seed, so the cache pass and training see the same pixels. It records
    ``teacher_view`` (:class:`RecordTeacherView`, run last) with
    ``replay_view`` (the view) and ``digest`` (of the augmented image, so
    that a replay that differs from the cached view is refused).

    Args:
        transforms (list[dict]): The augmentations, as in the pipeline.
        num_views (int): Views per image (K).
        seed (int): Base seed of the views. Defaults to 0.
    """

    def __init__(self,
                 transforms: List[dict],
                 num_views: int,
                 seed: int = 0) -> None:
        if num_views < 1:
            raise ValueError(f'num_views={num_views}: at least 1')
        transforms = list(transforms)
        if not any(
                t.get('type') == 'RecordTeacherView' for t in transforms):
            transforms.append(dict(type='RecordTeacherView'))
        self.transforms = Compose(transforms)
        self.num_views = num_views
        self.seed = seed
        #: A view to run instead of a random one (the cache pass sets it).
        self.view = None

    def transform(self, results: dict) -> dict:
        """Run the augmentations of one stored view.

        Args:
            results (dict): Result dict of the pipeline (``sample_idx``).

        Returns:
            dict: The augmented results with ``teacher_view``.
        """
        view = self.view if self.view is not None else int(
            np.random.randint(self.num_views))
        np_state, py_state = np.random.get_state(), random.getstate()
        seed = replay_seed(self.seed, int(results['sample_idx']), view)
        np.random.seed(seed)
        random.seed(seed)
        try:
            results = self.transforms(results)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        results['teacher_view'].update(
            replay_view=view, digest=image_digest(results['img']))
        return results
