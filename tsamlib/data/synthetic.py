"""Synthetic labelled video datasets written as real files: H.264 video + AAC audio in .mp4.

Every notebook and the README run on a fresh CPU machine with no download, so the data they need is
generated here, through the same path as real data: ``root/<class>/<class>_<i>.mp4`` files decoded by
decord, listed in ``root/manifest.csv`` (see :mod:`tsamlib.data.manifest`). Three kinds, see :func:`describe`:

- ``"default"``: classes told apart redundantly by motion, appearance and sound (an easy, fast start).
- ``"mini-kinetics-av"``: (shape) x (sound) classes: RGB alone or audio alone solves only half of it. Each shape
  has its own colour family (shade jittered); a yellow or magenta triangle is a distractor; noise at a random SNR
  (1 clip in 10 nearly drowns the sound).
- ``"mini-something"``: classes defined by temporal order and by far-apart frames (the reversed pairs
  have identical per-frame distributions, so an order-less model such as TSN is at chance on them). Shapes,
  colours, positions and background are random; the audio track (when asked for) is class-independent ambient
  noise. Train it without horizontal flips: direction is the label.

Content is a pure function of ``(seed, kind, class, clip index)``: same seed, same decoded pixels and
audio samples. Clip lengths vary by ``length_jitter`` around ``seconds``; fps and size are fixed.
H.264 in yuv420p needs even sizes: odd sizes are encoded as yuv444p (decord reads both).
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..runs.fileio import atomic_path, atomic_write_json, exclusive_lock, relative_to_repo, writable_folder

__all__ = ["KINDS", "describe", "SyntheticSettings", "make_synthetic_dataset", "render_clip", "write_clip",
           "picture_class", "outdated"]

PARAMS_FILE = "synthetic.json"
_VERSION = {"default": 1, "mini-kinetics-av": 2, "mini-something": 1}  # bumped when a kind's generator changes

CLASSES: dict[str, list[tuple[str, str]]] = {
    "default": [
        ("red_disk_slides_right", "red disk slides left to right; steady low tone (~262 Hz)"),
        ("green_square_falls", "green square moves down; tone (~392 Hz) pulsing ~3 times/s"),
        ("blue_triangle_rises", "blue triangle moves up; high tone (~660 Hz) pulsing ~6 times/s"),
        ("yellow_bar_spins", "yellow bar rotates about its centre; bursts of white noise ~2 times/s"),
        ("magenta_ring_grows", "magenta ring grows from small to large; rising chirp 300 -> 1200 Hz"),
        ("white_checker_blinks", "black/white checkerboard patch blinks on and off; steady low-pass (brown) noise"),
    ],
    "mini-kinetics-av": [
        ("disk_hum", "a red or orange disk wanders; low harmonic hum (110-180 Hz) under noise"),
        ("disk_beeps", "a red or orange disk wanders; high beeps (1-1.6 kHz, 3-5/s) under noise"),
        ("square_hum", "a blue or green square wanders; low harmonic hum under noise"),
        ("square_beeps", "a blue or green square wanders; high beeps under noise"),
        ("ring_hum", "a cyan or white ring wanders; low harmonic hum under noise"),
        ("ring_beeps", "a cyan or white ring wanders; high beeps under noise"),
    ],
    "mini-something": [
        ("moving_left_to_right", "an object crosses the frame from left to right"),
        ("moving_right_to_left", "an object crosses the frame from right to left"),
        ("appearing", "an object is absent at first and appears early (20-50% of the clip), then stays"),
        ("disappearing", "an object is present at first and disappears late (50-80% of the clip)"),
        ("colour_returns", "the object changes colour A -> B -> A: colour at the start equals colour at the end"),
        ("colour_changes_once", "the object changes colour A -> B once: start and end colours differ "
                                "(same share of B as in colour_returns)"),
        ("growing", "an object grows from small to large"),
        ("shrinking", "an object shrinks from large to small"),
    ],
}
KINDS = tuple(CLASSES)
_DEFAULTS = {  # n_per_class, n_classes, seconds, (H, W), fps
    "default": (20, 6, 2.0, (64, 64), 12),
    "mini-kinetics-av": (60, 4, 2.0, (64, 64), 12),  # sized for the mini benchmark (notebook 05):
    "mini-something": (60, 6, 2.0, (64, 64), 12),    # 24 per class left the scratch models near chance
}


def describe(kind: str = "default", n_classes: int | None = None) -> list[tuple[str, str]]:
    """(class_name, description) of the first ``n_classes`` classes of ``kind``, in label order.

    ``None``: the classes a dataset of the kind's default size really has (``_DEFAULTS[kind][1]``), which is
    what :func:`make_synthetic_dataset` writes when ``n_classes`` is not given.
    """
    if kind not in CLASSES:
        raise ValueError(f"Unknown synthetic kind {kind!r}: use one of {KINDS}.")
    n = _DEFAULTS[kind][1] if n_classes is None else int(n_classes)
    if not 1 <= n <= len(CLASSES[kind]):
        raise ValueError(f"n_classes={n} for kind {kind!r}: it has 1 to {len(CLASSES[kind])} classes.")
    return list(CLASSES[kind][:n])


# ------------------------------------------------------------------------------------------------ drawing
def picture_class(kind: str, class_name: str) -> str | None:
    """What the pictures alone can tell of a ``kind`` class: its shape for ``mini-kinetics-av`` ("disk_hum" ->
    "disk"; the sound splits the rest), None for kinds whose pictures tell the whole class."""
    return class_name.split("_")[0] if kind == "mini-kinetics-av" else None


def _shape_alpha(shape: str, u: np.ndarray, v: np.ndarray, cx, cy, r, angle=0.0, px: float = 64.0) -> np.ndarray:
    """Soft (anti-aliased) mask in [0, 1] of a shape centred at (cx, cy) with radius r, coordinates in [0, 1]."""
    cx, cy, r, angle = (np.asarray(a, np.float32)[..., None, None] for a in (cx, cy, r, angle))
    du, dv = u - cx, v - cy
    if shape == "disk":
        d = r - np.hypot(du, dv)
    elif shape == "ring":
        d = np.minimum(r - np.hypot(du, dv), np.hypot(du, dv) - 0.55 * r)
    elif shape in ("square", "checker"):
        d = r - np.maximum(abs(du), abs(dv))
    elif shape == "triangle":  # apex up
        d = np.minimum(np.minimum(r - dv, dv + r), (dv + r) * 0.5 - abs(du))
    elif shape == "bar":
        along = du * np.cos(angle) + dv * np.sin(angle)
        across = -du * np.sin(angle) + dv * np.cos(angle)
        d = np.minimum(r - abs(along), 0.22 * r - abs(across))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    a = np.clip(d * px + 0.5, 0.0, 1.0)
    if shape == "checker":
        a = a * (((np.floor(u * 8) + np.floor(v * 8)) % 2) > 0)
    return a


def _paint(frames: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Blend ``colour`` (RGB 0-255, or per-frame (T, 3)) into ``frames`` (T, H, W, 3 float) where ``alpha``."""
    c = np.asarray(colour, np.float32).reshape(-1, 1, 1, 3)
    frames += alpha[..., None] * (c - frames)


def _background(rng: np.random.Generator, T: int, u: np.ndarray, v: np.ndarray, noise: float = 8.0) -> np.ndarray:
    """Dark random gradient with per-frame pixel noise, (T, H, W, 3) float32."""
    c0, c1 = rng.uniform(10, 90, 3), rng.uniform(10, 90, 3)
    theta = rng.uniform(0, 2 * np.pi)
    g = (np.cos(theta) * (u - 0.5) + np.sin(theta) * (v - 0.5) + 0.5).clip(0, 1)[..., None]
    bg = (c0 + g * (c1 - c0)).astype(np.float32)
    return bg[None] + rng.normal(0, noise, (T, *bg.shape)).astype(np.float32)


# -------------------------------------------------------------------------------------------------- sound
def _tone(f, t: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * np.cumsum(np.broadcast_to(f, t.shape)) * (t[1] - t[0]))


def _pulses(rate: float, t: np.ndarray, duty: float = 0.4) -> np.ndarray:
    return ((t * rate) % 1.0 < duty).astype(np.float32)


def _noise(rng: np.random.Generator, n: int, colour: str = "white") -> np.ndarray:
    x = rng.normal(0, 1, n)
    if colour == "brown":
        x = np.cumsum(x)
        x -= np.convolve(x, np.ones(256) / 256, mode="same")  # remove the drift, keep the low rumble
    return x / (np.abs(x).max() + 1e-9)


def _mix(signal: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    s = signal / (np.sqrt(np.mean(signal ** 2)) + 1e-9)
    n = noise / (np.sqrt(np.mean(noise ** 2)) + 1e-9) * 10 ** (-snr_db / 20)
    x = s + n
    return (x / np.abs(x).max() * rng.uniform(0.3, 0.6)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- renderers
_DEFAULT_LOOK = [("disk", (220, 40, 40)), ("square", (40, 200, 60)), ("triangle", (50, 90, 230)),
                 ("bar", (230, 210, 40)), ("ring", (220, 50, 220)), ("checker", (245, 245, 245))]
_PALETTE = np.array([(220, 40, 40), (40, 200, 60), (50, 90, 230), (230, 210, 40), (220, 50, 220),
                     (40, 210, 220), (245, 245, 245), (240, 140, 30)], np.float32)


def _render_default(c: int, rng, s, tv, u, v, ta, px):
    T = len(s)
    frames = _background(rng, T, u, v)
    _paint(frames, _shape_alpha("disk", u, v, *rng.uniform(0.1, 0.9, 2), 0.06, px=px), rng.uniform(90, 140, 3))
    shape, colour = _DEFAULT_LOOK[c]
    colour = np.clip(np.array(colour) + rng.normal(0, 15, 3), 0, 255)
    x0, y0, speed = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.6)
    cx, cy, r, angle = np.full(T, x0), np.full(T, y0), np.full(T, rng.uniform(0.14, 0.2)), np.zeros(T)
    alpha_scale = np.ones(T)
    if c == 0:
        cx = 0.5 + (s - 0.5) * speed * 1.3
    elif c == 1:
        cy = 0.5 + (s - 0.5) * speed * 1.3
    elif c == 2:
        cy = 0.5 - (s - 0.5) * speed * 1.3
    elif c == 3:
        angle = rng.uniform(0, np.pi) + s * rng.uniform(1.5, 3.0) * np.pi * rng.choice([-1, 1])
        r = np.full(T, rng.uniform(0.22, 0.3))
    elif c == 4:
        r = 0.06 + s * rng.uniform(0.2, 0.28)
    else:
        alpha_scale = _pulses(rng.uniform(1.5, 2.5), tv + rng.uniform(0, 1), 0.5)
    _paint(frames, _shape_alpha(shape, u, v, cx, cy, r, angle, px) * alpha_scale[:, None, None], colour)
    if ta is None:
        return frames, None
    f = rng.uniform(0.97, 1.03)
    sound = [lambda: _tone(262 * f, ta),
             lambda: _tone(392 * f, ta) * _pulses(3 * f, ta),
             lambda: _tone(660 * f, ta) * _pulses(6 * f, ta),
             lambda: _noise(rng, len(ta)) * _pulses(2 * f, ta),
             lambda: _tone(300 + 900 * ta / ta[-1], ta),
             lambda: _noise(rng, len(ta), "brown")][c]()
    return frames, _mix(sound, _noise(rng, len(ta)), rng.uniform(15, 25), rng)


def _wander(rng, s, margin=0.25):
    """A smooth random path inside the frame (sum of two slow sinusoids per axis)."""
    path = []
    for _ in range(2):
        a, f, p = rng.uniform(0.05, 0.2, 2), rng.uniform(0.3, 1.2, 2), rng.uniform(0, 2 * np.pi, 2)
        x = rng.uniform(margin + 0.1, 1 - margin - 0.1)
        x = x + sum(a[i] * np.sin(2 * np.pi * f[i] * s + p[i]) for i in range(2))
        path.append(np.clip(x, margin, 1 - margin))
    return path


# mini-kinetics-av (version 2): shape and colour family go together (disks warm, squares cool, rings cyan/white);
# the triangle distractor takes the remaining colours. Version 1 drew every colour at random, so only the
# outline told disk from square: resnet18 from scratch at 32 px did not learn it within the mini grid's budget
# (TSM/TSAM RGB rows 25-29 %, chance 25 %, where the pictures allow 50 %; results/tables/README.md).
_KAV_COLOURS = ((0, 7), (2, 1), (5, 6))   # palette rows: disk red/orange, square blue/green, ring cyan/white
_KAV_DISTRACTOR = (3, 4)                  # triangle: yellow or magenta


def _render_kinetics_av(c: int, rng, s, tv, u, v, ta, px):
    T = len(s)
    frames = _background(rng, T, u, v, noise=12.0)
    dx, dy = _wander(rng, s, 0.15)
    tri = _PALETTE[_KAV_DISTRACTOR[rng.integers(len(_KAV_DISTRACTOR))]]
    _paint(frames, _shape_alpha("triangle", u, v, dx, dy, rng.uniform(0.1, 0.16), px=px), tri)
    shape = ("disk", "square", "ring")[c // 2]
    cx, cy = _wander(rng, s, 0.2)
    family = _KAV_COLOURS[c // 2]  # each shape has its own colour family, shared by no other object
    colour = np.clip(_PALETTE[family[rng.integers(len(family))]] + rng.normal(0, 20, 3), 0, 255)
    _paint(frames, _shape_alpha(shape, u, v, cx, cy, rng.uniform(0.1, 0.18), px=px), colour)
    if ta is None:
        return frames, None
    if c % 2 == 0:  # hum: harmonic low tone
        f0 = rng.uniform(110, 180)
        sound = sum(_tone(k * f0, ta) / k for k in (1, 2, 3))
    else:  # beeps: high tone bursts
        sound = _tone(rng.uniform(1000, 1600), ta) * _pulses(rng.uniform(3, 5), ta + rng.uniform(0, 1), 0.35)
    clicks = (rng.uniform(size=len(ta)) < 2e-4) * rng.normal(0, 1, len(ta))  # class-independent events
    snr = -15.0 if rng.uniform() < 0.1 else rng.uniform(-3, 12)
    noise = _noise(rng, len(ta), rng.choice(["white", "brown"])) + 3 * clicks
    return frames, _mix(sound, noise, snr, rng)


def _render_something(c: int, rng, s, tv, u, v, ta, px):
    T = len(s)
    frames = _background(rng, T, u, v)
    _paint(frames, _shape_alpha("square", u, v, *rng.uniform(0.1, 0.9, 2), 0.07, px=px), _PALETTE[rng.integers(8)])
    shape = rng.choice(["disk", "square", "triangle"])
    ci, cj = rng.choice(8, 2, replace=False)
    colour = np.repeat(_PALETTE[ci][None], T, 0)
    x0, y0, drift = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.75), rng.uniform(-0.04, 0.04, 2)
    cx, cy = x0 + drift[0] * (s - 0.5), y0 + drift[1] * (s - 0.5)  # symmetric drift: no order cue
    r, visible = np.full(T, rng.uniform(0.12, 0.18)), np.ones(T)
    change = rng.uniform(0.2, 0.5)  # appear / disappear moment, mirrored between the reversed pair
    b_share = rng.uniform(0.25, 0.45)  # share of the clip in colour B
    if c in (0, 1):
        start, end = rng.uniform(0.1, 0.25), rng.uniform(0.75, 0.9)
        cx = start + (end - start) * (s if c == 0 else 1 - s)
    elif c == 2:
        visible = (s >= change).astype(float)
    elif c == 3:
        visible = (s <= 1 - change).astype(float)
    elif c == 4:
        b0 = rng.uniform(0.15, 0.85 - b_share)
        colour[(s >= b0) & (s < b0 + b_share)] = _PALETTE[cj]
    elif c == 5:
        colour[(s >= 1 - b_share) if rng.uniform() < 0.5 else (s < b_share)] = _PALETTE[cj]
    else:
        lo, hi = rng.uniform(0.05, 0.08), rng.uniform(0.2, 0.28)
        r = lo + (hi - lo) * (s if c == 6 else 1 - s)
    _paint(frames, _shape_alpha(shape, u, v, cx, cy, r, px=px) * visible[:, None, None], colour)
    if ta is None:
        return frames, None
    return frames, _mix(_noise(rng, len(ta), "brown"), _noise(rng, len(ta)), rng.uniform(5, 20), rng)


_RENDER = {"default": _render_default, "mini-kinetics-av": _render_kinetics_av, "mini-something": _render_something}


def render_clip(kind: str, label: int, seed: int, index: int, seconds: float, size: tuple[int, int], fps: float,
                sample_rate: int = 16000, audio: bool = True, length_jitter: float = 0.0):
    """(frames uint8 (T, H, W, 3), audio float32 (n,) or None) of one clip; a pure function of its arguments."""
    kind_id = KINDS.index(kind)
    rng = np.random.default_rng([seed, kind_id, label, index])
    T = max(2, int(round(seconds * fps * rng.uniform(1 - length_jitter, 1 + length_jitter))))
    H, W = size
    v, u = np.meshgrid((np.arange(H) + 0.5) / H, (np.arange(W) + 0.5) / W, indexing="ij")
    u, v = u.astype(np.float32), v.astype(np.float32)
    ta = np.arange(int(round(T / fps * sample_rate))) / sample_rate if audio else None
    frames, sound = _RENDER[kind](label, rng, np.linspace(0, 1, T), np.arange(T) / fps, u, v, ta, float(max(H, W)))
    return np.clip(frames, 0, 255).astype(np.uint8), sound


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
               sample_rate: int = 16000, crf: int = 18) -> Path:
    """Encode ``frames`` (T, H, W, 3 uint8) as H.264 and ``audio`` (mono float) as AAC into an .mp4, atomically."""
    import av
    path = Path(path)
    H, W = frames.shape[1:3]
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height = W, H
        vs.pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
        # x264's lookahead / macroblock tree made the output vary between runs here: off, for determinism
        vs.options = {"crf": str(crf), "preset": "veryfast", "threads": "1",
                      "x264-params": "no-mbtree=1:rc-lookahead=0"}
        aus = c.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        for img in frames:
            c.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(vs.encode())
        if aus is not None:
            af = av.AudioFrame.from_ndarray(audio.astype(np.float32)[None], format="fltp", layout="mono")
            af.sample_rate = sample_rate
            c.mux(aus.encode(af))
            c.mux(aus.encode(None))
    return path


def _make_one(job: dict) -> str:
    frames, sound = render_clip(job["kind"], job["label"], job["seed"], job["index"], job["seconds"], job["size"],
                                job["fps"], job["sample_rate"], job["audio"], job["length_jitter"])
    return str(write_clip(job["path"], frames, job["fps"], sound, job["sample_rate"]))


def _run_jobs(jobs: list[dict], workers: int) -> None:
    from ..runs.progress import progress

    from .workers import single_thread  # here, not at the top: the module stays light (numpy only)
    with progress(total=len(jobs), desc="synth", unit="clip") as bar:
        if workers <= 1 or len(jobs) < 8:
            for j in jobs:
                _make_one(j)
                bar.update()
            return
        with ProcessPoolExecutor(workers, initializer=single_thread) as ex:
            for _ in ex.map(_make_one, jobs, chunksize=4):
                bar.update()


def _record(root: Path) -> dict | None:
    """``root/synthetic.json``: None when there is none, ``{}`` when it cannot be read (cut short by a full disk or
    a kill: written atomically since, but older datasets may hold one)."""
    pfile = root / PARAMS_FILE
    if not pfile.is_file():
        return None
    try:
        got = json.loads(pfile.read_text())
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def outdated(root: str | os.PathLike) -> str | None:
    """Why the synthetic dataset in ``root`` must be written again, or None when it need not (no record at all, or
    a complete one of this library's generator): ``"written by an older generator"`` (stale clips) or ``"left
    incomplete"`` (its writer was interrupted: the record is unreadable or says so)."""
    rec = _record(Path(root))
    if rec is None:
        return None
    if not rec or not rec.get("complete"):
        return "left incomplete"
    if rec.get("version") != _VERSION.get(rec.get("kind"), rec.get("version")):
        return "written by an older generator"
    return None


@dataclass(frozen=True)
class SyntheticSettings:
    """What a synthetic dataset holds; ``None`` takes the kind's default (``_DEFAULTS``). ``audio=False`` writes no
    audio track at all."""
    kind: str = "default"
    n_per_class: int | None = None
    n_classes: int | None = None
    seconds: float | None = None
    size: tuple[int, int] | None = None
    fps: float | None = None
    seed: int = 0
    audio: bool = True
    sample_rate: int = 16000
    length_jitter: float = 0.15
    valid_fraction: float = 0.2

    def record(self) -> dict:
        """The settings with the kind's defaults filled in, checked, as ``synthetic.json`` records them (with the
        generator's version); ValueError naming what is out of range."""
        kind, d = self.kind, _DEFAULTS[self.kind]
        n_classes = d[1] if self.n_classes is None else int(self.n_classes)
        if not 1 <= n_classes <= len(CLASSES[kind]):
            raise ValueError(f"n_classes={n_classes} for kind {kind!r}: it has 1 to {len(CLASSES[kind])} classes.")
        n_per_class = d[0] if self.n_per_class is None else self.n_per_class
        seconds = d[2] if self.seconds is None else self.seconds
        size = d[3] if self.size is None else self.size
        fps = d[4] if self.fps is None else self.fps
        bad = {k: v for k, v in dict(n_per_class=n_per_class, seconds=seconds, fps=fps).items() if not v > 0}
        if bad or len(size) != 2 or not all(int(x) == x >= 8 for x in size):
            raise ValueError(f"{bad or dict(size=size)}: n_per_class, seconds and fps must be positive and size two "
                             "whole numbers of at least 8 pixels (None takes the kind's default).")
        return dict(version=_VERSION[kind], kind=kind, n_per_class=int(n_per_class), n_classes=n_classes,
                    seconds=float(seconds), size=[int(x) for x in size], fps=float(fps), seed=int(self.seed),
                    audio=bool(self.audio), sample_rate=int(self.sample_rate),
                    length_jitter=float(self.length_jitter), valid_fraction=float(self.valid_fraction))


def make_synthetic_dataset(root: str | os.PathLike, kind: str = "default", overwrite: bool = False,
                           workers: int | None = None, **settings) -> Path:
    """Write a synthetic dataset under ``root`` (class folders of .mp4 + ``manifest.csv``); return ``root``.

    ``settings``: the other fields of :class:`SyntheticSettings` (``n_per_class``, ``n_classes``, ``seconds``,
    ``size``, ``fps``, ``seed``, ``audio``, ``sample_rate``, ``length_jitter``, ``valid_fraction``). Generation is
    skipped when ``root`` already holds a complete dataset with the same parameters (``root/synthetic.json``);
    different parameters raise unless ``overwrite=True``.
    One process at a time writes a ``root`` (a lock file beside it, ``.<root name>.synthetic.lock``): a second call
    waits, then finds the dataset complete and skips it.
    """
    classes = describe(kind, len(CLASSES.get(kind, ())) or None)
    params = SyntheticSettings(kind=kind, **settings).record()
    root = Path(root)
    # the lock file sits beside root, so root holds only the dataset
    writable_folder(root.parent, "choose another output folder (synth --out)")
    if root.exists():
        writable_folder(root, "choose another output folder (synth --out)")
    with exclusive_lock(root.parent / f".{root.name}.synthetic.lock", f"writing the synthetic dataset in "
                      f"{relative_to_repo(root)}"):
        return _write_dataset(root, params, classes, overwrite, workers)


def _write_dataset(root: Path, params: dict, classes: list, overwrite: bool, workers: int | None) -> Path:
    """The body of :func:`make_synthetic_dataset`, run under its lock: skip, check, or (re)write the dataset."""
    from .manifest import build_manifest
    kind, n_classes, seed = params["kind"], params["n_classes"], params["seed"]
    pfile = root / PARAMS_FILE
    if pfile.exists():
        old = _record(root) or {}   # unreadable: a write cut short; its clips are rewritten
        done = old.pop("complete", False)
        if old == params and done and (root / "manifest.csv").exists():
            print(f"synthetic dataset {kind!r} already in {relative_to_repo(root)} (same parameters): "
                  "skipping generation")
            return root
        diff = {k: (old.get(k), v) for k, v in params.items() if old.get(k) != v}
        if not old:  # no readable record: an interrupted write, never a dataset of other parameters
            print(f"{relative_to_repo(root)}: its {PARAMS_FILE} is unreadable (the writer was interrupted): writing "
                  "the dataset again")
        elif set(diff) == {"version"}:  # same settings, newer generator: the old clips are stale, write them anew
            print(f"{relative_to_repo(root)}: written by version {old.get('version')} of the {kind!r} generator; "
                  f"regenerating with version {params['version']}")
        elif diff and not overwrite:
            raise FileExistsError(f"{root} holds a synthetic dataset with other parameters (old, new): {diff}. "
                                  "Pass overwrite=True (CLI: --overwrite) or choose another folder.")
        for name, _ in CLASSES.get(old.get("kind", kind), ()):  # remove only what an earlier run wrote
            shutil.rmtree(root / name, ignore_errors=True)
    elif root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and holds no {PARAMS_FILE}: choose an empty or new folder "
                              "for the synthetic dataset (nothing there is deleted).")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(pfile, {**params, "complete": False})   # a full disk never leaves a cut-short record

    jobs, records = [], []
    for label, (name, _) in enumerate(classes[:n_classes]):
        (root / name).mkdir(exist_ok=True)
        n = params["n_per_class"]
        order = np.random.default_rng([seed, 7919, label]).permutation(n)
        valid = set(order[: int(round(params["valid_fraction"] * n))].tolist())
        for i in range(n):
            path = root / name / f"{name}_{i:03d}.mp4"
            jobs.append(dict(params, label=label, index=i, path=str(path), size=tuple(params["size"])))
            records.append(dict(path=str(path), label=label, label_name=name, split="valid" if i in valid else "train"))
    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    _run_jobs(jobs, workers)
    df = build_manifest(records, root / "manifest.csv", workers=workers, verbose=False)
    bad = df[df["problem"] != ""]
    if len(bad):
        raise RuntimeError(f"{len(bad)} generated clips do not decode, "
                           f"e.g. {bad['path'].iloc[0]}: {bad['problem'].iloc[0]}")
    atomic_write_json(pfile, {**params, "complete": True})
    print(f"synthetic dataset {kind!r}: {len(df)} clips, {n_classes} classes in {relative_to_repo(root)}")
    return root
