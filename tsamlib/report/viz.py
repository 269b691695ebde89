"""Figures for notebook 02: the shift pattern (report figures 1-2), the shift on a clip's features, TSN frame
sampling and the 3-channel log-mel of a clip's sound track (any video file: synthetic or real). Every picture is
drawn from the library's own code path (``temporal_shift``, ``load_clip``, ``log_mels``), not re-implemented
for display."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.audio import DEFAULT_SR, load_waveform, log_mels
from ..data.video import count_frames, load_clip, segment_indices
from ..evaluation.interpret import wrap_to_width
from ..model.shift import temporal_shift
from ..model.shift_reference import ShiftSpec

__all__ = ["shift_source_map", "plot_shift_pattern", "plot_shift_on_features", "plot_sampled_frames",
           "plot_log_mels", "SEGMENT_COLOURS", "AUDIO_COLOUR"]


def shift_source_map(n_segments: int, channels: int, shift_depth: int, f_div: int, n_audio: int = 0,
                     shift_pad: str = "zero") -> np.ndarray:
    """(T, C) map of where each output value comes from: source segment index, or -1 for a zero
    (``shift_pad="keep"``: border cells keep their own segment, as in the authors' code)."""
    t = n_segments + n_audio
    x = torch.arange(1, t + 1, dtype=torch.float).view(1, t, 1, 1, 1).expand(1, t, channels, 1, 1).contiguous()
    y = temporal_shift(x, shift_depth, f_div, n_shifted=n_segments, shift_pad=shift_pad)
    return (y[0, :, :, 0, 0] - 1).long().numpy()


# Paul Tol's "muted" scheme: 9 colours that stay distinct under protan-, deutan- and tritanopia (tests check the
# distances); the audio frame is black, a value from outside the clip white.
SEGMENT_COLOURS = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499")
AUDIO_COLOUR = "#000000"


def plot_shift_pattern(depths=(1, 2, 3, 4), n_segments: int = 8, channels: int = 32, f_div: int = 4,
                       n_audio: int = 1):
    """One panel per depth k: rows = output segment t, columns = channels, colour = source segment.

    Each cell is one channel of one output segment after the shift; its colour (colourbar) is the segment the
    value comes from, and a moved run of channels is labelled with that source segment's number. Channels of a
    group move together; white cells are zeros (the source lies outside the clip); the last row (audio) never
    moves. Arrows are the report's figures 1-2 read as a table. Colours: :data:`SEGMENT_COLOURS` (told apart with
    any colour vision; beyond 9 segments they repeat, and the numbers tell the segments apart)."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgba

    depths = list(depths)
    total = n_segments + n_audio
    segment_colours = [to_rgba(SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)]) for i in range(n_segments)]
    colours = [to_rgba("white")] + segment_colours + [to_rgba(AUDIO_COLOUR)] * n_audio
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(-0.5, total + 1.5), cmap.N)   # value v = source segment + 1, 0 = zero
    ncols = min(2, len(depths))
    nrows = -(-len(depths) // ncols)
    figsize = (0.19 * channels * ncols + 1.8, (0.36 * total + 1.2) * nrows + 0.6)  # ~14 pt per channel column
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    for ax in axes.flat[len(depths):]:
        ax.set_visible(False)
    for ax, k in zip(axes.flat, depths):
        src = shift_source_map(n_segments, channels, k, f_div, n_audio)
        ax.imshow(src + 1, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        for r in range(src.shape[0]):  # one number per run of channels moved together from the same segment
            c = 0
            while c < channels:
                s, end = int(src[r, c]), c
                while end + 1 < channels and src[r, end + 1] == s:
                    end += 1
                if s != r and s >= 0:
                    rgb = np.asarray(colours[s + 1][:3])
                    dark = float(rgb @ [0.299, 0.587, 0.114]) < 0.5
                    ax.text((c + end) / 2, r, str(s), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
                c = end + 1
        f = ShiftSpec(k, f_div).fold(channels)
        ax.set_title(f"k={k}: {2 * k} groups of {f} ch, {2 * k * f}/{channels} channels move", fontsize=10)
        ax.set_xlabel("channel")
        ax.set_ylabel("segment t (after the shift)")
        ax.set_yticks(range(total), [f"t={i}" for i in range(n_segments)] + ["audio"] * n_audio, fontsize=8)
    ticks = np.arange(total + 1)
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, ticks=ticks, shrink=0.9)
    cb.ax.set_yticklabels(["zero (outside clip)"] + [f"t={i}" for i in range(n_segments)] + ["audio"] * n_audio,
                          fontsize=8)
    cb.set_label("source segment of the value\n(number: source t of a moved run of channels)", fontsize=9)
    fig.suptitle(wrap_to_width(f"Temporal shift, {n_segments} segments + {n_audio} audio frame, {channels} channels, "
                               f"f_div={f_div}: a cell's colour and number = the segment its value comes from",
                               fig.get_figwidth(), 10), fontsize=10)
    return fig


def plot_shift_on_features(path: str | Path, shift_depth: int = 2, f_div: int = 4, n_frames: int = 8,
                           size: int = 112, arch: str = "resnet18", channels=(0, 1, -1)):
    """Features of a clip (any video file): the stem + layer1 output of a ResNet, before and after the shift.

    For each shown channel, a row of the T segments before and after: shifted channels show the map
    of segment t +/- d (or zeros at the ends), unshifted channels are unchanged."""
    import matplotlib.pyplot as plt
    import timm
    import torch.nn.functional as F

    frames, idx = load_clip(path, n_frames, "valid")
    x = frames.permute(0, 3, 1, 2).float().div(255)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    net = timm.create_model(arch, num_classes=0).eval()
    with torch.no_grad():
        feats = net.layer1(net.maxpool(net.act1(net.bn1(net.conv1(x)))))  # (T, C, h, w)
        shifted = temporal_shift(feats[None], shift_depth, f_div)[0]
    c_total = feats.shape[1]
    f = ShiftSpec(shift_depth, f_div).fold(c_total)
    chans = [c % c_total for c in channels]
    fig, axes = plt.subplots(2 * len(chans), n_frames, figsize=(1.2 * n_frames, 1.3 * 2 * len(chans)), squeeze=False)
    for i, c in enumerate(chans):
        group = c // f if c < 2 * shift_depth * f else None
        what = ("unshifted" if group is None else
                f"from t{'+' if group % 2 == 0 else '-'}{group // 2 + 1}")
        for t in range(n_frames):
            for j, (data, tag) in enumerate(((feats, "before"), (shifted, "after"))):
                ax = axes[2 * i + j, t]
                ax.imshow(data[t, c].numpy(), cmap="magma")
                ax.set_xticks([]), ax.set_yticks([])
                if t == 0:
                    ax.set_ylabel(f"ch {c} {tag}\n({what})", fontsize=7)
                if i == 0 and j == 0:
                    ax.set_title(f"t={t} (frame {idx[t]})", fontsize=7)
    fig.suptitle(f"{Path(path).name}: layer1 features, shift k={shift_depth}, f_div={f_div}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_sampled_frames(path: str | Path, n_frames: int = 8, seed: int = 0):
    """TSN sampling of a video: training (random frame per segment) vs validation (centre frames).

    Columns are the ``n_frames`` segments (their frame range on top); each image's label is the 0-based index
    of the decoded frame."""
    import matplotlib.pyplot as plt

    n = count_frames(path)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(2, n_frames, figsize=(max(1.4 * n_frames, 5.0), 3.9), squeeze=False,
                             layout="constrained")
    for r, mode in enumerate(("train", "valid")):
        frames, idx = load_clip(path, n_frames, mode, rng=rng)
        for t in range(n_frames):
            ax = axes[r, t]
            ax.imshow(frames[t].numpy())
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlabel(f"frame {int(idx[t])}", fontsize=8)
            if r == 0:
                lo, hi = (t * n) // n_frames, -(-(t + 1) * n // n_frames) - 1
                ax.set_title(f"segment {t}\nframes {lo}-{max(lo, hi)}", fontsize=8)
        axes[r, 0].set_ylabel({"train": "train\n(random frame\nin segment)",
                               "valid": "valid\n(centre frame)"}[mode], fontsize=8)
    centres = [int(i) for i in segment_indices(n, n_frames, "valid")]
    fig.suptitle(wrap_to_width(f"{Path(path).name}: {n} frames (0-based) split into {n_frames} segments, one frame "
                               f"each\nvalidation centres {centres}; training draws (seed {seed}) change every epoch",
                               fig.get_figwidth(), 9), fontsize=9)
    return fig


def plot_log_mels(path: str | Path, n_mels: int = 128, sr: int = DEFAULT_SR, windows_ms=(25, 50, 100),
                  hops_ms=(10, 25, 50)):
    """The three log-mel channels of a clip's sound track, with time (s) and mel-frequency (Hz) axes."""
    import librosa
    import matplotlib.pyplot as plt

    w = load_waveform(path, sr=sr)
    mels = log_mels(w.wave, w.sr, n_mels, windows_ms, hops_ms)
    freqs = librosa.mel_frequencies(n_mels=n_mels, fmax=w.sr / 2)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, m, win, hop in zip(axes, mels, windows_ms, hops_ms):
        dur = m.shape[1] * hop / 1000
        im = ax.imshow(m, origin="lower", aspect="auto", cmap="magma", extent=(0, dur, 0, n_mels))
        ticks = np.linspace(0, n_mels - 1, 5).astype(int)
        ax.set_yticks(ticks, [f"{freqs[t]:.0f}" for t in ticks])
        ax.set_xlabel("time (s)")
        ax.set_title(f"window {win} ms, hop {hop} ms: {m.shape[1]} frames", fontsize=9)
        fig.colorbar(im, ax=ax, label="log(mel + 1e-6)")
    axes[0].set_ylabel("mel frequency (Hz)")
    note = "" if w.has_audio else " (no audio track: silent)"
    fig.suptitle(f"{Path(path).name}: {len(w.wave) / w.sr:.1f} s at {w.sr} Hz{note}", fontsize=9)
    fig.tight_layout()
    return fig
