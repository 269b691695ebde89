"""Figures and printed summaries read as a reader sees them: plain numbers, legible text,
nothing clipped, axes and error bars explained, classes that the datasets really have, no machine paths."""
from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from tsamlib.data.synthetic import _DEFAULTS, CLASSES, describe  # noqa: E402
from tsamlib.evaluation.interpret import (
    ViewsInterpretation,  # noqa: E402
    wrap_to_width,  # noqa: E402
)
from tsamlib.report import tables as tb  # noqa: E402
from tsamlib.report.viz import plot_sampled_frames, plot_shift_pattern  # noqa: E402
from tsamlib.runs.fileio import repo_root  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def frame_folder(path, n=13, size=(24, 32)):
    """A clip as a folder of PNG frames (load_clip reads these like a video): fast, no encoder."""
    from PIL import Image
    path.mkdir(parents=True)
    for i in range(n):
        img = np.full((*size, 3), 20 * i % 255, np.uint8)
        img[:, : (i * size[1]) // n] = 200
        Image.fromarray(img).save(path / f"{i + 1:05d}.png")
    return path


def texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _canvas(fig: Figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    if not hasattr(fig.canvas, "get_renderer"):  # a figure closed by write_figures
        FigureCanvasAgg(fig)
    return fig.canvas


def outside(fig: Figure) -> list[str]:
    """Texts whose drawn extent leaves the figure (they would be clipped in a saved PNG)."""
    _canvas(fig).draw()
    box, r = fig.bbox, fig.canvas.get_renderer()
    ticks = {id(lab) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
             for tick in axis.get_major_ticks() + axis.get_minor_ticks() for lab in (tick.label1, tick.label2)}
    items = [(t.get_text(), t.get_window_extent(r)) for t in texts(fig) if id(t) not in ticks]
    items += [(f"axes {i} (ticks and labels)", ax.get_tightbbox(r))
              for i, ax in enumerate(fig.axes) if ax.get_visible()]
    return [name for name, e in items
            if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1]


def overlapping(items: list[Text], fig: Figure) -> list[tuple[str, str]]:
    _canvas(fig).draw()
    r = fig.canvas.get_renderer()
    ext = [(t.get_text(), t.get_window_extent(r)) for t in items]
    return [(a, b) for i, (a, ea) in enumerate(ext) for b, eb in ext[i + 1:] if ea.overlaps(eb)]


# ------------------------------------------------------------------------------------------------ viz
def test_sampled_frames_plain_ints_and_readable_labels(tmp_path):
    clip = frame_folder(tmp_path / "clip")
    fig = plot_sampled_frames(clip, n_frames=4)
    all_text = " ".join(t.get_text() for t in texts(fig))
    assert "np.int" not in all_text and "int64" not in all_text
    assert "centres [1, 4, 8, 11]" in fig.get_suptitle().replace("\n", " ")  # 13 frames, 4 segments
    assert str(tmp_path) not in all_text  # the file name only, no machine path
    # every frame is labelled with its frame index, and no label hides under another row's image or label
    labels = [ax.xaxis.label for ax in fig.axes] + [ax.title for ax in fig.axes if ax.get_title()]
    assert sum(1 for ax in fig.axes if ax.get_xlabel().startswith("frame ")) == 8
    assert not overlapping(labels, fig)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    images = [ax.get_window_extent(r) for ax in fig.axes]
    for lab in labels:
        e = lab.get_window_extent(r)
        assert not any(e.overlaps(im) for im in images), lab.get_text()
    assert not outside(fig)


def test_sampled_frames_long_name_not_clipped(tmp_path):
    clip = frame_folder(tmp_path / ("a_very_long_clip_name_" * 4 + "x"), n=9)
    fig = plot_sampled_frames(clip, n_frames=3)
    assert not outside(fig)


def test_shift_pattern_legible_and_explained():
    fig = plot_shift_pattern((1, 4), n_segments=8, channels=32, f_div=4)
    panels = [ax for ax in fig.axes if ax.get_images()]
    numbers = [t for ax in panels for t in ax.texts]
    assert numbers and min(t.get_fontsize() for t in numbers) >= 7
    assert all(ax.get_xlabel() == "channel" and "segment t" in ax.get_ylabel() for ax in panels)
    colourbars = [ax for ax in fig.axes if ax not in panels]
    assert len(colourbars) == 1
    cb_text = colourbars[0].get_ylabel() + " ".join(t.get_text() for t in colourbars[0].get_yticklabels())
    assert "source segment" in cb_text and "zero" in cb_text and "audio" in cb_text
    assert not overlapping(numbers, fig)
    assert not outside(fig)


# Machado et al. (2009) colour-vision-deficiency matrices, severity 1, on linear RGB
_CVD = {"normal": np.eye(3),
        "protan": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
        "deutan": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                            [-0.011820, 0.042940, 0.968881]]),
        "tritan": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]])}


def _lab(rgb: np.ndarray, vision: str) -> np.ndarray:
    """CIELAB of sRGB colours as seen with ``vision``."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.clip(lin @ _CVD[vision].T, 0, 1) @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                                                           [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], -1)


def test_shift_pattern_colours_differ_for_colour_blind_readers():
    """Every two colours of the figure (zero, each segment, audio) stay at least 12 CIELAB units apart with normal
    vision and simulated protanopia, deuteranopia and tritanopia (viridis' neighbours came to 8.5)."""
    fig = plot_shift_pattern((1, 4), n_segments=8, channels=32, f_div=4, n_audio=1)
    image = next(ax for ax in fig.axes if ax.get_images()).get_images()[0]
    colours = np.asarray(image.get_cmap().colors, float)[:, :3]
    assert len(colours) == 1 + 8 + 1                                     # zero, t=0..7, audio
    for vision in _CVD:
        lab = _lab(colours, vision)
        d = np.linalg.norm(lab[:, None] - lab[None], axis=-1) + np.diag([np.inf] * len(lab))
        assert d.min() >= 12, (vision, d.min())


def test_wrap_to_width_keeps_lines_short():
    text = "word " * 200
    lines = wrap_to_width(text, 5.0, 9).splitlines()
    assert len(lines) > 3 and max(map(len, lines)) <= 5.0 * 72 / (0.62 * 9)


# ------------------------------------------------------------------------------------------------ evaluate
def _interp(paths, n_classes=5, n_frames=4):
    g = torch.Generator().manual_seed(0)
    n = len(paths)
    probs = torch.softmax(3 * torch.randn(n, n_classes, generator=g), 1)
    labels = torch.arange(n) % n_classes
    vocab = [f"class_with_a_rather_long_name_{i}" for i in range(n_classes)]
    return ViewsInterpretation(probs, labels, vocab, paths, n_frames)


def test_most_confused_plain_python(tmp_path):
    interp = _interp([str(tmp_path / f"v{i}.mp4") for i in range(12)])
    mc = interp.most_confused()
    assert mc and all(type(a) is str and type(b) is str and type(n) is int for a, b, n in mc)
    assert "np." not in repr(mc)
    assert [n for *_, n in mc] == sorted((n for *_, n in mc), reverse=True)
    assert all(n >= 2 for *_, n in interp.most_confused(2))


def test_top_losses_titles_inside_figure(tmp_path):
    clips = [str(frame_folder(tmp_path / f"clip{i}", n=8)) for i in range(3)]
    missing = str(tmp_path / "gone.mp4")
    interp = _interp(clips + [missing], n_frames=4)
    fig = interp.plot_top_losses(4)
    assert len(fig.axes) == 4 * 4
    assert not outside(fig)
    titles = [sf._suptitle for sf in fig.subfigs]
    assert len(titles) == 4 and all("loss" in t.get_text() and "→" in t.get_text() for t in titles)
    assert not overlapping(titles + [fig._suptitle], fig)
    all_text = " ".join(t.get_text() for t in texts(fig))
    assert str(tmp_path) not in all_text  # outside the repository: file names only
    assert "-log p(true class)" in fig.get_suptitle().replace("\n", " ")


# ------------------------------------------------------------------------------------------------ synthetic
def test_describe_lists_the_classes_the_dataset_has():
    assert len(describe("mini-kinetics-av")) == 4
    assert len(describe("mini-something")) == 6
    assert len(describe("default")) == 6
    for kind in CLASSES:
        assert len(describe(kind)) == _DEFAULTS[kind][1]
        assert describe(kind, len(CLASSES[kind])) == CLASSES[kind]
    assert [n for n, _ in describe("mini-something", 2)] == ["moving_left_to_right", "moving_right_to_left"]
    with pytest.raises(ValueError, match="n_classes"):
        describe("mini-kinetics-av", 7)


def test_synth_cli_describe(capsys):
    from tsamlib.__main__ import main
    assert main(["synth", "--describe", "--kind", "mini-kinetics-av"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "ring_hum" not in " ".join(out)


# ------------------------------------------------------------------------------------------------ tables
def _tables(n_seeds: int) -> dict[str, pd.DataFrame]:
    """Rendered-table stand-ins with the columns write_figures reads (see tables.render_table)."""
    scratch = "scratch (stand-in for ImageNet: no ImageNet weights offline)"
    spread = 2.0 if n_seeds > 1 else math.nan
    t1 = []
    for frames in (8, 16):
        for audio in (False, True):
            t1.append({"Scale": "mini", "_method": "TSAM", "_frames": frames, "_audio": audio,
                       "_pretrained": "ImageNet", "Init used": scratch, "Paper top-1": 73.0 + 2 * audio,
                       "_measured": 30.0 + 15 * audio, "_spread": spread, "n seeds": n_seeds})
            t1.append({"Scale": "mini", "_method": "TSAM", "_frames": frames, "_audio": audio,
                       "_pretrained": "INet21K", "Init used": "-", "Paper top-1": 76.0 + 2 * audio,
                       "_measured": math.nan, "_spread": math.nan, "n seeds": 0})
    t2 = [{"Scale": "mini", "_method": "TSAM", "_pretrained": "INet21K", "_shift_depth": k,
           "Init used": "scratch (stand-in for INet21K, same init for every k)", "Paper top-1": 50.0 + k / 10,
           "_measured": 40.0 + 5 * k, "_spread": spread, "n seeds": n_seeds} for k in range(1, 6)]
    return {"table1": pd.DataFrame(t1), "table2": pd.DataFrame(t2)}


@pytest.mark.parametrize("n_seeds", [1, 2])
def test_write_figures_explain_init_and_error_bars(tmp_path, monkeypatch, n_seeds):
    saved: dict[str, Figure] = {}
    orig = Figure.savefig

    def keep(self, fname, *a, **kw):
        name = str(fname).rsplit("/", 1)[-1]
        saved[re.sub(r"^\.(.+?)\.[^.]+\.tmp(\.png)$", r"\1\2", name)] = self   # atomic_path's temporary name
        return orig(self, fname, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    paths = tb.write_figures(_tables(n_seeds), tmp_path)
    assert [p.name for p in paths] == ["top1_vs_shift_depth.png", "audio_gain.png"]
    for name, fig in saved.items():
        words = " ".join(t.get_text() for t in texts(fig)).replace("\n", " ")
        assert "std" in words and "seeds" in words and "scratch" in words, name
        assert str(repo_root()) not in words
        assert not outside(fig), name
    gain = saved["audio_gain.png"]
    ticks = [t.get_text() for t in gain.axes[0].get_xticklabels()]
    measured = [t for t in ticks if "ImageNet" in t]
    assert measured and all("measured: scratch" in t for t in measured)  # never "ImageNet" alone over scratch runs
    words = " ".join(t.get_text() for t in texts(gain))
    assert f"n={n_seeds}/{n_seeds}" in words
    assert ("no error bars" in words) == (n_seeds < 2)
    depth = saved["top1_vs_shift_depth.png"]
    legend = " ".join(t.get_text() for ax in depth.axes if ax.get_legend() for t in ax.get_legend().get_texts())
    assert "sample std over seeds" in legend and f"n = {n_seeds}" in legend
    main, zoom = depth.axes   # report and measured on one y axis; the report alone at its own scale beside it
    assert main.get_ylim() == (0, 100) and zoom.get_ylim()[1] - zoom.get_ylim()[0] < 5
    causal = [t.get_text() for t in main.texts if t.get_color() == "#009E73"]
    assert len(causal) == sum(1 for k in (1, 2, 3, 4) if k) or not causal   # every causal point carries its value
    bars = [b for b in gain.axes[0].patches if b.get_facecolor()[:3] == (0.0, 0x72 / 255, 0xB2 / 255)]
    assert all(b.get_height() != 0 for b in bars)   # a slot not run draws no bar (no stub at 0)
    for name in saved:   # no label, value or note drawn over another
        assert not overlapping(texts(saved[name]), saved[name]), name


def test_committed_figures_rerender(tmp_path):
    """The committed runs render into both figures without training (seconds)."""
    if not (repo_root() / "results" / "runs").is_dir():
        pytest.skip("no committed runs")
    tables = tb.write_tables("mini", None, tmp_path / "tables", seeds=[0, 1])
    paths = tb.write_figures(tables, tmp_path / "figures")
    assert all(p.stat().st_size > 10_000 for p in paths)
