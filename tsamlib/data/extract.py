"""The authors' frame extraction, done with PyAV's bindings of FFmpeg's own libraries (no ``ffmpeg`` program needed).

The authors (github:aav-antonov/TSAM, ``video2frames.py``) frame every video with::

    ffmpeg -i VIDEO -vf "scale=-1:256,fps=10" -q:v 0 "FRAMES/<id>/%06d.jpg"

(``--fps`` changes the 10, ``fps <= 0`` drops the ``fps`` filter; the name pattern is the data config's
``frames_tmpl``, ``{:06d}.jpg`` for Kinetics-400). :func:`extract_frames` runs the same steps:

- decoding with FFmpeg's decoder, timestamps shifted so that the file starts at 0 (what ``ffmpeg`` does to an input
  by default: the container's start time is subtracted);
- the video turned upright when the file says so (``ffmpeg`` rotates by default: a 90/270-degree display matrix
  becomes ``transpose``, 180 degrees ``hflip,vflip``);
- the filter graph ``buffer -> scale=w=-1:h=H:flags=bicubic -> fps=F -> format=yuvj420p|yuvj422p|yuvj444p ->
  buffersink``: ``scale=-1:H`` makes every frame H pixels high and ``round(W * H / h)`` wide (aspect kept, up- or
  down-scaled; a 360x640 portrait video becomes 144x256), bicubic as ``ffmpeg``'s default scaler flags; the
  ``format`` step is the pixel formats of FFmpeg's JPEG encoder, which ``ffmpeg`` puts at the end of the graph, so
  the scaler also converts to full-range YUV as it does there;
- the ``fps`` filter chooses the frames: each input timestamp is rounded to the nearest output tick of 1/F s (halves
  away from zero); output tick k, from the first frame's tick up to, not including, the tick of the end of the last
  frame (its timestamp + duration), shows the last input frame whose tick is <= k. A 10 s clip gives 100 frames at
  10 fps, a 5.2 s clip 52;
- JPEG from FFmpeg's ``mjpeg`` encoder with a fixed quantiser, as ``-q:v Q`` sets it (the qscale flag, global quality
  ``Q * FF_QP2LAMBDA``; the encoder raises 0 to its minimum quantiser, 2), one file per frame, ``%0Nd.jpg`` counted
  from 1 (the image muxer's start number).

Checked against ``ffmpeg`` 7.0.2 running that command on the 12 real Kinetics clips (``tests/data/test_extract.py``
does it when an ``ffmpeg`` is found): the same number of frames, the same sizes and the same quantisation tables; the
pixels differ by at most one level in a share of the chroma samples before JPEG, since the limited-to-full range
conversion of libswscale rounds differently in FFmpeg 8 (PyAV's) than in 7.0; the JPEG comment names the library
version. ``fps=None`` keeps every decoded frame (the authors' ``fps <= 0``; ``ffmpeg`` would also duplicate or drop
frames of a variable-rate video to its nominal rate).
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

__all__ = ["extract_frames", "JPEG_PIX_FMTS", "FF_QP2LAMBDA"]

JPEG_PIX_FMTS = "yuvj420p|yuvj422p|yuvj444p"   # the mjpeg encoder's formats, as ffmpeg lists them for the graph
FF_QP2LAMBDA = 118                              # libavutil: lambda per quantiser step


def _rotation_filters(rotation: float) -> list[tuple[str, dict]]:
    """The filters ``ffmpeg`` inserts for a display matrix of ``rotation`` degrees (PyAV's sign: counter-clockwise)."""
    theta = (-rotation) % 360           # ffmpeg's get_rotation(): clockwise, in [0, 360)
    if abs(theta - 90) < 1:
        return [("transpose", dict(dir="clock"))]
    if abs(theta - 180) < 1:
        return [("hflip", {}), ("vflip", {})]
    if abs(theta - 270) < 1:
        return [("transpose", dict(dir="cclock"))]
    if 1 < theta < 359:
        return [("rotate", dict(angle=f"{theta}*PI/180"))]
    return []


def _fps_text(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else repr(float(fps))


def _start_shift(start_time: int | None, tb: Fraction | None) -> int:
    """The container's start time (microseconds) in stream ticks, as ``ffmpeg`` subtracts it from every timestamp:
    rounded to the nearest, halves away from 0 (``av_rescale``)."""
    if start_time is None or not tb:
        return 0
    x = Fraction(start_time, 1_000_000) / tb
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


class _Extraction:
    """One :func:`extract_frames` run over the decoded frames of stream ``st``: the filter graph (built on the first
    frame), the JPEG encoder (opened on the first filtered frame) and the files written (``n``)."""

    def __init__(self, st, start_time: int | None, out_dir: Path, fps: float | None, height: int, qscale: int,
                 digits: int):
        self.out_dir, self.fps, self.height, self.qscale, self.digits = out_dir, fps, height, qscale, digits
        self.tb = st.time_base
        self.shift = _start_shift(start_time, self.tb)
        self.sar = st.sample_aspect_ratio or Fraction(0, 1)
        self.graph = self.enc = None
        self.n = 0
        self.first_size, self.turned = None, False

    def push(self, frame) -> None:
        """One decoded frame through the graph; the frames it lets out are encoded and written."""
        if self.graph is None:
            self.first_size = (frame.width, frame.height)
            self._build(frame)
        if frame.pts is not None:
            frame.pts -= self.shift
        self.graph.vpush(frame)
        self._drain()

    def finish(self) -> None:
        """End of the stream: what the graph and the encoder still hold is written."""
        self.graph.vpush(None)
        self._drain()
        if self.enc is not None:
            self._write(self.enc.encode(None))

    def _build(self, frame) -> None:
        import av.filter
        tb, sar = self.tb, self.sar
        graph = self.graph = av.filter.Graph()
        graph.threads = 1
        nodes = [graph.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=frame.format.name,
                           time_base=f"{tb.numerator}/{tb.denominator}",
                           pixel_aspect=f"{sar.numerator}/{sar.denominator}",
                           colorspace=str(int(frame.colorspace)), range=str(int(frame.color_range)))]
        chain = _rotation_filters(frame.rotation or 0)
        self.turned = any(name == "transpose" for name, _ in chain)
        chain.append(("scale", dict(w="-1", h=str(int(self.height)), flags="bicubic")))
        if self.fps is not None:
            chain.append(("fps", dict(fps=_fps_text(self.fps))))
        chain.append(("format", dict(pix_fmts=JPEG_PIX_FMTS)))
        for name, kw in chain:
            nodes.append(graph.add(name, **kw))
        nodes.append(graph.add("buffersink"))
        for a, b in zip(nodes, nodes[1:]):
            a.link_to(b)
        graph.configure()

    def _write(self, packets) -> None:
        for p in packets:
            self.n += 1
            (self.out_dir / f"{self.n:0{self.digits}d}.jpg").write_bytes(bytes(p))

    def _open_encoder(self, f) -> None:
        import av
        enc = self.enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height, enc.pix_fmt = f.width, f.height, f.format.name
        enc.time_base = Fraction(1, 25) if self.fps is None else 1 / Fraction(_fps_text(self.fps))
        if self.sar:   # the scaler keeps the picture's shape: the pixels' aspect follows (JFIF density)
            (w0, h0), s0 = self.first_size, self.sar
            if self.turned:                      # transpose swaps the sides and inverts the pixels' aspect
                (w0, h0), s0 = (h0, w0), 1 / self.sar
            enc.sample_aspect_ratio = s0 * Fraction(f.height * w0, f.width * h0)
        enc.thread_count = 1
        enc.qscale = True
        enc.global_quality = int(self.qscale) * FF_QP2LAMBDA
        enc.color_range = f.color_range
        enc.open()

    def _drain(self) -> None:
        import av
        while True:
            try:
                f = self.graph.vpull()
            except (av.BlockingIOError, av.EOFError):
                return
            if self.enc is None:
                self._open_encoder(f)
                # ffmpeg's constant-rate output starts at the file's time 0: a video that starts later has its
                # first picture repeated for the ticks before it
                lead = max(0, int(f.pts or 0)) if self.fps is not None else 0
                packets = self.enc.encode(f)
                for _ in range(lead):
                    self._write(packets)
                self._write(packets)
                continue
            self._write(self.enc.encode(f))


def extract_frames(source: str | Path, out_dir: str | Path, fps: float | None = 10.0, height: int = 256,
                   qscale: int = 0, digits: int = 6) -> tuple[int, float]:
    """Write the frames of video ``source`` into ``out_dir`` as ``ffmpeg -i SOURCE -vf "scale=-1:HEIGHT,fps=FPS"
    -q:v QSCALE OUT_DIR/%0<digits>d.jpg`` does (module docstring); ``fps=None``: no ``fps`` filter.

    Returns (frames written, the source's average frame rate). Raises what PyAV raises for a file it cannot decode,
    ValueError for a file without a video stream or without a decodable frame."""
    import av
    if height < 1:
        raise ValueError(f"height must be a positive number of pixels, got {height}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive (or None for every frame), got {fps}")
    with av.open(str(source)) as c:
        if not c.streams.video:
            raise ValueError("no video stream")
        st = c.streams.video[0]
        st.thread_type = "SLICE"
        st.codec_context.thread_count = 1
        src_fps = float(st.average_rate or math.nan)
        run = _Extraction(st, c.start_time, Path(out_dir), fps, height, qscale, digits)
        try:
            for frame in c.decode(st):
                run.push(frame)
        except av.error.FFmpegError:
            if run.graph is None:
                raise                                   # keep what decoded before a broken tail, as the loaders do
        if run.graph is None:
            raise ValueError("no decodable frame")
        run.finish()
    return run.n, src_fps
