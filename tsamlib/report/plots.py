"""The figures of notebooks 04, 06 and 07, one call each: a run's training curves, per-class accuracy, a prediction
on one video, a checkpoint scored with both protocols, a video streamed frame by frame. Each takes what the
evaluation returned and gives back the matplotlib figure (axes labelled with what they count)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..data.video import load_clip
from ..evaluation.scoring import per_class_accuracy

__all__ = ["plot_training_curves", "plot_per_class_accuracy", "plot_prediction", "plot_protocols", "plot_stream"]


def plot_training_curves(metrics: dict[str, Any]):
    """Loss and validation accuracy per epoch, as notebook 03 recorded them (``metrics.json`` of a run)."""
    import matplotlib.pyplot as plt

    epochs = pd.DataFrame(metrics["epochs"]).set_index("epoch")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    epochs[["train_loss", "valid_loss"]].plot(ax=axes[0], marker="o", title="loss per epoch")
    axes[0].set_ylabel("cross-entropy (mean over the epoch)")
    epochs[["top1", "top5"]].plot(ax=axes[1], marker="o", title="validation accuracy (1 centre clip per video)",
                                  ylim=(0, 1.05))
    axes[1].set_ylabel("fraction of validation videos")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def plot_per_class_accuracy(res: dict[str, Any]):
    """Top-1 accuracy of each class of an evaluation (:func:`tsamlib.evaluation.views.evaluate_views`)."""
    import matplotlib.pyplot as plt

    pca = per_class_accuracy(res)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(pca) + 1))
    pca.set_index("class_name")["accuracy"].plot.barh(ax=ax, xlim=(0, 1))
    p = res["protocol"]
    ax.set_xlabel(f"top-1 accuracy ({p['n_clips']}x{p['n_crops']} views per video)")
    ax.set_ylabel("class")
    fig.tight_layout()
    return fig


def plot_prediction(video: str | Path, top: Sequence[tuple[str, float]], n_frames: int, n_clips: int):
    """The centre frames of ``video`` (one per segment) above its top classes (:func:`tsamlib.predict`)."""
    import matplotlib.pyplot as plt

    frames, _ = load_clip(video, n_frames, "valid")
    fig = plt.figure(figsize=(max(6.0, 1.6 * len(frames)), 2.2 + 0.4 * len(top)), layout="constrained")
    above, below = fig.subfigures(2, 1, height_ratios=[1.9, 0.4 * len(top) + 0.8])
    for ax, f in zip(above.subplots(1, len(frames)), frames):
        ax.imshow(f.numpy())
        ax.axis("off")
    above.suptitle(f"{Path(video).name}: {len(frames)} centre frames (one per segment)", fontsize=9)
    ax = below.subplots()
    names, probs = zip(*top)
    ax.barh(range(len(top))[::-1], probs)
    ax.set_yticks(range(len(top))[::-1], names)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"probability (mean over {n_clips} clips)")
    ax.set_title(f"top-{len(top)} prediction", fontsize=9)
    return fig


def plot_protocols(res: dict[str, Any], table: pd.DataFrame):
    """A checkpoint scored with several protocols (:func:`tsamlib.evaluation.released.evaluate_checkpoint` and its
    :func:`~tsamlib.evaluation.released.summary_table`): top-1/top-5 of each protocol fixed in advance and, when the
    authors' protocol ran, its top-1 after 1..n passes with the honest all-passes figure and the best-of-n one
    selected on the evaluation set."""
    import matplotlib.pyplot as plt

    a = res.get("authors")
    rows = [r for r in table.index if r != "authors' printed figure"]
    fig, axes = plt.subplots(1, 2 if a else 1, figsize=(11 if a else 6.5, 0.9 + 0.55 * max(3, len(rows))),
                             squeeze=False)
    left = axes[0][0]
    n_videos = int(table["videos"].iloc[0])
    table.loc[rows[::-1], ["top-1 %", "top-5 %"]].plot.barh(
        ax=left, xlim=(0, 115), title=f"{n_videos} videos, each protocol fixed in advance")
    for bars in left.containers:
        left.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    left.set_xlabel("% of videos")
    left.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if a:
        right = axes[0][1]
        after = [100 * v for v in a["top1_after_passes"]]
        right.plot(range(1, len(after) + 1), after, marker="o", label="top-1 after 1..n passes")
        right.scatter([len(after)], [100 * a["top1"]], s=120, zorder=3, label="honest: all passes")
        right.scatter([a["n_passes_selected_on_eval_set"]], [100 * a["top1_best_of_n_selected_on_eval_set"]],
                      s=220, marker="*", zorder=4, label="best of 1..n: selected on the evaluation set")
        right.set(xlabel="passes summed", ylabel="top-1 %", ylim=(-3, 103), title="the authors' protocol",
                  xticks=range(1, len(after) + 1))
        right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_stream(steps: Sequence[Any], vocab: Sequence[str], offline: Sequence[tuple[str, float]],
                label: str | None = None, video: str | Path | None = None):
    """Probability over time of a streamed video (:func:`tsamlib.evaluation.stream.stream_video`'s steps): the class
    the stream ends on and, when given and different, the true ``label``; the offline prediction's probability of
    the same classes (:func:`tsamlib.predict` with one clip: the same frames at once) as dashed lines."""
    import matplotlib.pyplot as plt

    times = [s.time for s in steps]
    final = vocab[int(steps[-1].probs.argmax())]
    classes = [final] + ([label] if label and label != final else [])
    off = dict(offline)
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    for name, colour in zip(classes, ("#0072B2", "#D55E00")):
        i = list(vocab).index(name)
        ax.plot(times, [float(s.probs[i]) for s in steps], "o-", color=colour,
                label=f"{name}: stream{' (the true class)' if name == label else ''}")
        if name in off:
            ax.axhline(off[name], ls="--", color=colour, lw=1, label=f"{name}: offline, whole clip at once")
    ax.set(xlabel="time in the video (s): when the frame has been shown", ylabel="probability", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"{Path(video).name + ': ' if video else ''}{len(steps)} frames streamed", fontsize=9)
    return fig
