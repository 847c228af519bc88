"""The picture of a search: score (mAP) against multiply-adds of every scored path, coloured by generation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..utils.io import atomic_outputs


def plot_search(candidates: Sequence[Mapping[str, Any]], out_file: Path, generations: int,
                flops_limit: Optional[float] = None, flops_min: Optional[float] = None,
                best: Optional[Mapping[str, Any]] = None, references: Sequence[Mapping[str, Any]] = (),
                title: str = 'evolutionary search', score_name: str = 'mAP (held-out split)') -> Path:
    """Scatter of ``score`` against ``flops`` (millions) of ``candidates``, coloured by ``generation``; the budget as
    dashed lines, ``best`` as a star, ``references`` (records with a ``name``) as labelled diamonds. Written
    atomically as PNG."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    try:
        if candidates:
            x = [c['flops'] / 1e6 for c in candidates]
            y = [c['score'] for c in candidates]
            g = [c['generation'] for c in candidates]
            points = ax.scatter(x, y, c=g, cmap='viridis', vmin=0, vmax=max(generations - 1, 1), s=22,
                                edgecolors='none', alpha=0.85)
            bar = fig.colorbar(points, ax=ax, ticks=MaxNLocator(integer=True))
            bar.set_label('generation (0: random)')
        for value, label in ((flops_limit, 'budget'), (flops_min, 'minimum')):
            if value is not None:
                ax.axvline(value / 1e6, color='grey', linestyle='--', linewidth=1, label=f'{label} {value / 1e6:.1f}M')
        if best is not None:
            ax.scatter([best['flops'] / 1e6], [best['score']], marker='*', s=220, color='crimson',
                       edgecolors='black', linewidths=0.6, zorder=5, label=f"best {best['score']:.3f}")
        for ref in references:
            ax.scatter([ref['flops'] / 1e6], [ref['score']], marker='D', s=60, color='orange', edgecolors='black',
                       linewidths=0.6, zorder=4, label=f"{ref.get('name', 'reference')} {ref['score']:.3f}")
        ax.set_xlabel('multiply-adds (M)')
        ax.set_ylabel(score_name)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc='lower right', fontsize=8)
        fig.tight_layout()
        with atomic_outputs([out_file], 'search plot') as (tmp,):
            fig.savefig(tmp, format='png')
    finally:
        plt.close(fig)
    return Path(out_file)
