# Copyright (c) gskd-mm contributors. All rights reserved.
"""The tables the analysis tools print."""
from typing import List, Sequence

from .loss_gradients import TermGradients

__all__ = ['gradient_table', 'markdown_table', 'percent', 'text_table']


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table: the first column left, the others right.

    Args:
        header (Sequence[str]): Column titles.
        rows (Sequence[Sequence[str]]): Cells, one row per sequence.

    Returns:
        str: The header, a rule, and the rows.
    """
    table = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        '  '.join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths))) for row in table
    ]
    lines.insert(1, '-' * len(lines[0]))
    return '\n'.join(lines)


def markdown_table(header: Sequence[str],
                   rows: Sequence[Sequence[str]]) -> str:
    """A markdown table.

    Args:
        header (Sequence[str]): Column titles.
        rows (Sequence[Sequence[str]]): Cells, one row per sequence.

    Returns:
        str: The table.
    """
    lines: List[str] = ['| ' + ' | '.join(header) + ' |',
                        '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def percent(share: float) -> str:
    """A share in percent, three significant digits, no exponent above 1."""
    value = 100 * share
    return f'{value:.0f}' if abs(value) >= 1000 else f'{value:.3g}'


def gradient_table(results: TermGradients) -> str:
    """One row a term: value, share, student and connector gradient norms.

    Args:
        results (dict[str, TermGradient]): As
            :func:`~gskd_mm.analysis.term_gradient_norms` returns.

    Returns:
        str: A text table.
    """
    connectors = list(next(iter(results.values())).connectors)
    header = ['term', 'value', 'share %', 'grad student'
              ] + [f'grad {name}' for name in connectors]
    rows = [[
        name, f'{r.value:.4g}',
        percent(r.share), f'{r.student:.4g}'
    ] + [f'{r.connectors[c]:.4g}' for c in connectors]
            for name, r in results.items()]
    return text_table(header, rows)
