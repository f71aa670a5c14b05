# Copyright (c) gskd-mm contributors. All rights reserved.
"""GSKD's descriptors: the row-wise shuffle into groups of columns, and the
KL between teacher and student descriptors
(:class:`~gskd_mm.models.losses.GSKDLoss`)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: How the KL of a descriptor is normalised (``GSKDLoss(normalize=...)``).
NORMALIZATIONS = ('length', 'descriptor', 'row')


def grouped_columns(rows_valid: Tensor, num_present: Tensor,
                    max_present: int,
                    group_size: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Shuffle every row's columns and lay them out in groups.

    Args:
        rows_valid (Tensor): (N, B) mask of real (not padding) samples.
        num_present (Tensor): (N,) number of classes per image.
        max_present (int): ``num_present.max()``.
        group_size (int): GSKD's S: columns per group if > 0, else ``-S``
            times the image's classes present.

    Returns:
        tuple[Tensor, Tensor, Tensor]: Column indices into the
        similarity matrices, (N, B, G * S) for G groups of at most S
        columns; the (N, G, S) mask of the columns that exist; the (N,)
        number of groups of each image.
    """
    num_imgs, max_samples = rows_valid.shape
    num_samples = rows_valid.sum(1)  # B of each image
    if group_size > 0:
        width = torch.full_like(num_samples, group_size)
    else:
        width = -group_size * num_present
    # A group wider than the B columns of its image is all of them.
    width = torch.minimum(width, num_samples).clamp(min=1)
    max_width = min(
        group_size if group_size > 0 else -group_size * max_present,
        max_samples)
    max_groups = -(-max_samples // max_width)
    groups_per_img = -(-num_samples // width)

    # Row-wise shuffle: sorting random keys gives every row its own
    # uniform permutation; padding columns sort last.
    keys = torch.rand(
        num_imgs, max_samples, max_samples, device=rows_valid.device)
    keys.masked_fill_(~rows_valid[:, None, :], 2.0)
    perm = keys.argsort(dim=2)

    # Shuffled position of column k of group g: g * width + k.
    group = torch.arange(max_groups, device=perm.device)[:, None]
    within = torch.arange(max_width, device=perm.device)
    position = group * width[:, None, None] + within  # (N, G, S)
    columns_valid = (within < width[:, None, None]) & (
        position < num_samples[:, None, None])
    position = torch.where(columns_valid, position, 0).flatten(1)
    columns = perm.gather(
        2, position[:, None, :].expand(-1, max_samples, -1))
    return columns, columns_valid, groups_per_img


def descriptor_kl_terms(sim_S: Tensor,
                        sim_T: Tensor,
                        rows_valid: Tensor,
                        columns_valid: Tensor,
                        tau: float,
                        normalize: str = 'length',
                        keep: Optional[Tensor] = None) -> Tensor:
    """KL between every teacher and student descriptor, as in GSKD.

    ``'length'`` (the authors'): ``KL(teacher || student) * tau**2 /
    length`` of the flattened descriptors, ``length`` their number of
    entries; ``'descriptor'``: not divided; ``'row'``: the rows' ``KL *
    tau**2`` averaged over the rows that have an entry.

    Args:
        sim_S (Tensor): (N, B, G * S) student similarities, shuffled and
            laid out group by group.
        sim_T (Tensor): The teacher's, same layout.
        rows_valid (Tensor): (N, B) mask of real rows.
        columns_valid (Tensor): (N, G, S) mask of real columns.
        tau (float): Temperature.
        normalize (str): 'length', 'descriptor' or 'row'. Defaults to
            'length'.
        keep (Tensor, optional): (N, B, G * S) mask of the entries to
            compare, on top of the real rows and columns (e.g. off the
            diagonal). Defaults to None (all of them).

    Returns:
        Tensor: (N, G) terms; zero for groups with no entry (padding).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f'normalize must be one of {NORMALIZATIONS}, got '
                         f'{normalize!r}')
    if normalize == 'row':
        return _row_kl_terms(sim_S, sim_T, rows_valid, columns_valid, tau,
                             keep)
    num_imgs, rows, _ = sim_S.shape
    max_groups, max_width = columns_valid.shape[1:]
    floor = torch.finfo(torch.float32).min  # see _row_kl_terms

    def group_major(sim: Tensor) -> Tensor:
        # (N, B, G*S) -> (N, G, B*S): one flat descriptor per group.
        return sim.view(num_imgs, rows, max_groups, max_width).transpose(
            1, 2).reshape(num_imgs, max_groups, rows * max_width)

    mask = rows_valid[:, None, :, None] & columns_valid[:, :, None, :]
    mask = mask.reshape(num_imgs, max_groups, rows * max_width)
    if keep is not None:
        mask = mask & group_major(keep)
    log_p_S = F.log_softmax(
        (group_major(sim_S) / tau).masked_fill(~mask, floor), dim=2)
    log_p_T = F.log_softmax(
        (group_major(sim_T) / tau).masked_fill(~mask, floor), dim=2)
    kl = torch.where(mask, log_p_T.exp() * (log_p_T - log_p_S), 0.0).sum(2)
    if normalize == 'descriptor':
        return kl * tau**2
    return kl * tau**2 / mask.sum(2).clamp(min=1)


def _row_kl_terms(sim_S: Tensor, sim_T: Tensor, rows_valid: Tensor,
                  columns_valid: Tensor, tau: float,
                  keep: Optional[Tensor]) -> Tensor:
    """:func:`descriptor_kl_terms` with ``normalize='row'``: (N, G)."""
    num_imgs, rows, _ = sim_S.shape
    max_groups, max_width = columns_valid.shape[1:]
    # Masked entries get a huge negative logit: zero probability, no NaN
    # even for padding groups or rows that have no entry at all.
    floor = torch.finfo(torch.float32).min
    shape = (num_imgs, rows, max_groups, max_width)
    mask = rows_valid[:, :, None, None] & columns_valid[:, None]
    if keep is not None:
        mask = mask & keep.view(shape)
    log_p_S = F.log_softmax(
        (sim_S.view(shape) / tau).masked_fill(~mask, floor), dim=3)
    log_p_T = F.log_softmax(
        (sim_T.view(shape) / tau).masked_fill(~mask, floor), dim=3)
    kl = torch.where(mask, log_p_T.exp() * (log_p_T - log_p_S),
                     0.0).sum(3)  # (N, B, G)
    rows_in = mask.any(3).sum(1)
    return (kl * tau**2).sum(1) / rows_in.clamp(min=1)
