"""Interpret evaluated videos with fastai: confusion matrix, most confused classes, the largest losses with frames.

:class:`ViewsInterpretation` is a fastai ``ClassificationInterpretation`` over stored probabilities (one row per
video, from :func:`tsamlib.evaluation.views.evaluate_views`); :func:`learner_interpretation` builds one from a fastai
Learner, :func:`tsamlib.evaluation.views.interpretation` from a run folder or an evaluation's result dict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from fastai.interpret import ClassificationInterpretation

__all__ = ["ViewsInterpretation", "learner_interpretation", "plot_top_losses", "wrap_to_width"]


class _VocabHolder:
    """Stands in for the DataLoader fastai's interpretation reads ``vocab`` from."""
    def __init__(self, vocab, paths):
        self.vocab, self.items = list(vocab), list(paths)


class ViewsInterpretation(ClassificationInterpretation):
    """fastai `ClassificationInterpretation` over stored probabilities (one row per video).

    ``plot_confusion_matrix``, ``most_confused``, ``confusion_matrix``, ``top_losses`` work as in fastai;
    ``plot_top_losses(k)`` shows each video's frames with label, prediction, loss and probability.
    """
    def __init__(self, probs: torch.Tensor, labels: torch.Tensor, vocab: Sequence[str], paths: Sequence[str],
                 n_frames: int = 8, learn=None, protocol: dict | None = None):
        self.preds, self.targs = probs.float(), labels.long()
        losses = -self.preds.gather(1, self.targs[:, None]).clamp_min(1e-12).log()[:, 0]
        super().__init__(learn, _VocabHolder(vocab, paths), losses)
        self.vocab = list(vocab)   # fastai takes the last item of a plain list (multi-category vocab)
        self.paths, self.n_frames, self.protocol = list(paths), n_frames, protocol or {}

    def confusion_matrix(self) -> np.ndarray:
        c, cm = len(self.vocab), np.zeros((len(self.vocab), len(self.vocab)), dtype=np.int64)
        np.add.at(cm, (self.targs.numpy(), self.preds.argmax(1).numpy()), 1)
        return cm[:c, :c]

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual class, predicted class, number of videos), largest first, as plain Python str/int
        (fastai's version returns numpy integers)."""
        return [(str(a), str(b), int(n)) for a, b, n in super().most_confused(min_val)]

    def plot_top_losses(self, k: int = 4, largest: bool = True, **kwargs):
        return plot_top_losses(self, k, largest, **kwargs)


def learner_interpretation(learn) -> ViewsInterpretation:
    """A fastai classification interpretation of a `Learner`'s valid DataLoader (one centre clip per video)."""
    preds, targs = learn.get_preds(dl=learn.dls.valid)
    ds = learn.dls.valid.dataset
    dropped = learn.dls.skipped("valid") if hasattr(learn.dls, "skipped") else {}
    paths = [p for p in getattr(ds, "paths", [""] * len(targs)) if p not in dropped]  # in step with preds
    return ViewsInterpretation(preds, targs, learn.dls.vocab, paths, getattr(ds, "n_frames", 8), learn=learn,
                               protocol=dict(split="valid", n_clips=1, n_crops=1))


def plot_top_losses(interp: ViewsInterpretation, k: int = 4, largest: bool = True, n_show: int | None = None,
                    figsize=None):
    """Rows of the `k` largest (or smallest) losses: the clip's centre frames, titled with label /
    prediction / loss / probability of the prediction. Returns the matplotlib figure.

    Each row is a subfigure whose title is wrapped to the figure's width, and the layout is constrained,
    so no title is clipped or hidden under the row above."""
    import matplotlib.pyplot as plt

    from ..data.video import load_clip
    from ..runs.fileio import relative_to_repo

    def shown(q) -> str:   # a path inside the repository relative to it, any other by its name
        rel = relative_to_repo(q)
        return Path(q).name if Path(rel).is_absolute() else rel

    losses, idx = interp.top_losses(min(k, len(interp.losses)), largest)
    t = n_show or interp.n_frames
    n_rows = max(1, len(idx))
    fig = plt.figure(figsize=figsize or (max(1.3 * t, 5.5), 1.75 * n_rows + 0.9), layout="constrained")
    width = fig.get_figwidth()
    which = "largest" if largest else "smallest"
    fig.suptitle(wrap_to_width(f"Videos with the {which} loss: true class → predicted class; "
                               "loss = -log p(true class) of the mean softmax over the evaluated views; "
                               "p = probability of the prediction. "
                               f"Frames: the centre frame of each of {t} segments.", width, 9), fontsize=9)
    subfigs = np.atleast_1d(fig.subfigures(n_rows, 1))
    for r, sub in enumerate(subfigs):
        axes = sub.subplots(1, t, squeeze=False)[0]
        for ax in axes:
            ax.axis("off")
        if r >= len(idx):
            continue
        i, loss = int(idx[r]), float(losses[r])
        p, y = interp.preds[i], int(interp.targs[i])
        k_pred = int(p.argmax())
        try:
            frames, _ = load_clip(interp.paths[i], t, "valid")
            for c, ax in enumerate(axes):
                ax.imshow(frames[c].numpy())
        except Exception as e:
            msg = str(e).replace(str(Path(interp.paths[i])), shown(interp.paths[i]))
            axes[0].text(0, 0.5, wrap_to_width(f"cannot show: {msg}"[:200], width, 7), fontsize=7,
                         transform=axes[0].transAxes, va="center").set_in_layout(False)
        sub.suptitle(wrap_to_width(f"{shown(interp.paths[i]) if interp.paths[i] else ''}\n"
                                   f"{interp.vocab[y]} → {interp.vocab[k_pred]} / loss {loss:.2f} / "
                                   f"p {float(p[k_pred]):.2f}", width, 8).lstrip("\n"), fontsize=8)
    return fig


def wrap_to_width(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with its lines wrapped so that each fits ``width_in`` inches at ``fontsize`` points (a figure
    title that would otherwise run past the figure's edges is cut there)."""
    import textwrap
    chars = max(10, int(width_in * 72 / (0.62 * fontsize)))  # DejaVu Sans: ~0.6 em per character
    return "\n".join(textwrap.fill(line, chars, break_on_hyphens=False) for line in text.splitlines())
