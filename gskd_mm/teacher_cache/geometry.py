# Copyright (c) gskd-mm contributors. All rights reserved.
"""Cut a training crop's teacher targets from a cached full-image map.

Every transform of the dense mode is axis-aligned (resize, crop, flip,
padding), so the map is sampled separably: for each output row and column,
its source coordinate in the cached map, then bilinear interpolation
between the two nearest rows and columns, borders clamped. Coordinates
follow MMSeg's resize alignment (``align_corners=False``): cell ``i`` of a
map at stride ``s`` is centred on pixel ``(i + 0.5) * s - 0.5``, and pixel
``u`` of an image resized by ``f`` on ``(u + 0.5) / f - 0.5`` of the
original. At integer source coordinates (the same scale, stride 1) the
sample is the cached value itself.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['TeacherView', 'source_coords', 'sample_map', 'output_size']


class TeacherView(dict):
    """Where a training crop came from (``teacher_view`` of its metainfo).

    Keys: ``ori_shape`` (h, w) of the image as loaded; ``scale_factor``
    (w, h) of its resize; ``img_shape`` (h, w) after the resize;
    ``crop_bbox`` (y1, y2, x1, x2) of the crop in the resized image,
    clipped to it; ``flip`` and ``flip_direction`` applied to the crop;
    ``pad_shape`` (h, w) after any padding of the pipeline;
    ``sample_idx`` and ``img_path`` of the image.
    """


def output_size(size: int, stride: int) -> int:
    """The size of a map at ``stride`` of an input of ``size`` pixels."""
    return int(math.ceil(size / stride))


def source_coords(out: int, stride: int, crop: Tuple[int, int],
                  flip: bool, factor: float, cached_factor: float,
                  cached_size: int, cached_flip: bool,
                  map_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Source coordinates, along one axis, of a crop's target cells.

    Args:
        out (int): Cells of the target along this axis.
        stride (int): The teacher's stride on the crop's input.
        crop (tuple[int, int]): Start and end of the crop in the resized
            image (end clipped to the image).
        flip (bool): Whether the crop was flipped along this axis.
        factor (float): The training resize's factor along this axis.
        cached_factor (float): The cached view's resize factor.
        cached_size (int): The cached view's image size along this axis.
        cached_flip (bool): Whether the cached view is flipped along it.
        map_size (int): The cached map's size along this axis.

    Returns:
        tuple[np.ndarray, np.ndarray]: The (float64) coordinate in the
        cached map of each cell, and whether the cell lies in the crop
        (False: padding).
    """
    start, end = crop
    extent = end - start
    pixel = (np.arange(out, dtype=np.float64) + 0.5) * stride - 0.5
    valid = pixel < extent - 0.5 + 1e-9
    if flip:
        pixel = extent - 1 - pixel
    resized = pixel + start
    cached = (resized + 0.5) * (cached_factor / factor) - 0.5
    if cached_flip:
        cached = cached_size - 1 - cached
    coord = (cached + 0.5) * (map_size / cached_size) - 0.5
    return coord, valid


def _weights(coord: np.ndarray,
             size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear neighbours and weight of each coordinate (border clamp,
    as PyTorch's bilinear resize clamps)."""
    coord = np.clip(coord, 0, size - 1)
    low = np.floor(coord).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    weight = (coord - low).astype(np.float32)
    return low, high, weight


def sample_map(read, ys: np.ndarray, xs: np.ndarray, shape: Sequence[int],
               valid: Optional[np.ndarray] = None) -> torch.Tensor:
    """Sample a cached (C, h, w) map at separable coordinates.

    Args:
        read (callable): ``read(rows)`` returns the map's rows ``rows``
            as a (C, len(rows), w) float32 array (only those rows are read
            from a memory-mapped cache).
        ys (np.ndarray): Row coordinate of each output row.
        xs (np.ndarray): Column coordinate of each output column.
        shape (Sequence[int]): The map's (C, h, w).
        valid (np.ndarray, optional): (len(ys), len(xs)) cells in the
            crop; others are set to zero. Defaults to None (all).

    Returns:
        Tensor: (C, len(ys), len(xs)) float32.
    """
    _, h, w = shape
    y0, y1, wy = _weights(ys, h)
    x0, x1, wx = _weights(xs, w)
    rows = np.unique(np.concatenate([y0, y1]))
    block = torch.from_numpy(np.ascontiguousarray(read(rows)))
    lookup = {r: i for i, r in enumerate(rows.tolist())}
    i0 = torch.as_tensor([lookup[r] for r in y0.tolist()])
    i1 = torch.as_tensor([lookup[r] for r in y1.tolist()])
    wy_t = torch.from_numpy(wy)[None, :, None]
    # Where a weight is 0 the neighbour is not mixed in at all, so that
    # integer coordinates give the cached values exactly.
    top, bottom = block[:, i0], block[:, i1]
    rows_out = torch.where(wy_t == 0, top, top + (bottom - top) * wy_t)
    wx_t = torch.from_numpy(wx)[None, None, :]
    left = rows_out[:, :, torch.from_numpy(x0)]
    right = rows_out[:, :, torch.from_numpy(x1)]
    out = torch.where(wx_t == 0, left, left + (right - left) * wx_t)
    if valid is not None:
        out = out * torch.from_numpy(valid.astype(np.float32))[None]
    return out


def sample_view(read, shape: Sequence[int], stride: int,
                out_hw: Tuple[int, int], view: Dict,
                cached: Dict) -> Tuple[torch.Tensor, np.ndarray]:
    """A crop's target from one cached view's map.

    Args:
        read (callable): See :func:`sample_map`.
        shape (Sequence[int]): The cached map's (C, h, w).
        stride (int): The teacher's stride (input pixels per map cell).
        out_hw (tuple[int, int]): The target's (h, w): the teacher's
            output size on the padded batch.
        view (dict): The crop's :class:`TeacherView`.
        cached (dict): The cached view (``img_shape``, ``scale_factor``,
            ``flip``).

    Returns:
        tuple[Tensor, np.ndarray]: The (C, h, w) target (zero on
        padding) and the (h, w) mask of cells inside the crop.
    """
    y1, y2, x1, x2 = view['crop_bbox']
    direction = view.get('flip_direction') if view.get('flip') else None
    cached_direction = cached.get('flip')
    fw, fh = view['scale_factor']
    cfw, cfh = cached['scale_factor']
    ch, cw = cached['img_shape']
    ys, vy = source_coords(out_hw[0], stride, (y1, y2),
                           direction in ('vertical', 'diagonal'), fh, cfh,
                           ch, cached_direction in ('vertical', 'diagonal'),
                           shape[1])
    xs, vx = source_coords(out_hw[1], stride, (x1, x2),
                           direction in ('horizontal', 'diagonal'), fw, cfw,
                           cw, cached_direction in ('horizontal', 'diagonal'),
                           shape[2])
    valid = vy[:, None] & vx[None, :]
    return sample_map(read, ys, xs, shape, None if valid.all() else
                      valid), valid
