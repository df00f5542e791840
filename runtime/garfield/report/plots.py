"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

Panel = tuple[str, list[list[float | None]], list[list[str]]]


def heatmaps(path: Path, panels: Sequence[Panel], rows: Sequence[str], cols: Sequence[str], title: str) -> None:
    """One heat map per panel: (name, accuracy per cell or None, a mark per cell). A cell with no accuracy is grey and
    shows its mark (why it has none: the training failed, validation refused it), so a broken job never reads as 0%."""
    fig, axes = plt.subplots(1, len(panels), figsize=(1.1 * len(cols) * len(panels) + 2, 0.55 * len(rows) + 2.2),
                             squeeze=False)
    image = None
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#c8c8c8")
    for ax, (name, values, marks) in zip(axes[0], panels, strict=True):
        data = np.array([[np.nan if v is None else 100 * v for v in row] for row in values], dtype=float)
        image = ax.imshow(np.ma.masked_invalid(data), vmin=0, vmax=100, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(cols)), labels=list(cols), rotation=40, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=8)
        ax.set_title(name, fontsize=10)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                text = marks[i][j] or "-" if np.isnan(data[i, j]) else f"{data[i, j]:.0f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6 if np.isnan(data[i, j]) else 7)
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="accuracy %")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def bars(path: Path, groups: Sequence[str], series: Sequence[tuple[str, list[float | None], list[float | None]]],
         ylabel: str, title: str, ylim: tuple[float, float] | None = None) -> None:
    """Grouped bars: one series per (label, values, errors)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(1, len(series)) * 0.5 + 3), 3.8))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, values, errors) in enumerate(series):
        v = [np.nan if a is None else a for a in values]
        e = [0.0 if a is None else a for a in errors]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, yerr=e, label=label, capsize=2)
    ax.set_xticks(x, labels=list(groups), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def stacked(path: Path, groups: Sequence[str], parts: Sequence[tuple[str, list[float]]], ylabel: str, title: str) -> None:
    """Stacked bars (one bar per group, one segment per part)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(groups) + 2), 3.8))
    bottom = np.zeros(len(groups))
    for label, values in parts:
        ax.bar(range(len(groups)), values, 0.6, bottom=bottom, label=label)
        bottom += np.array(values)
    ax.set_xticks(range(len(groups)), labels=list(groups), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def lines(path: Path, series: Sequence[tuple[str, list[float], list[float]]], xlabel: str, ylabel: str, title: str,
          right: Sequence[tuple[str, list[float], list[float]]] = (), right_label: str = "") -> None:
    """Line plots (label, xs, ys), optionally a second set on a right-hand axis (dashed)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    for label, xs, ys in series:
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        for label, xs, ys in right:
            ax2.plot(xs, ys, marker="s", linestyle="--", label=label)
        ax2.set_ylabel(right_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
