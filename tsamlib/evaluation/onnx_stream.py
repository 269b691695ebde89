"""The reference loop of an exported stream graph (``export --stream``): numpy and onnxruntime only, no torch.

    stream = OnnxStream("stream.onnx")
    for frame in frames:                      # (B, 3, H, W) float32, preprocessed as the run trains
        logits = stream.step(frame)           # step(frame, audio) when a new audio image is ready
    stream.reset()                            # a new stream: the state back to zeros

Each step feeds the frame (and, with audio, the image and its ``audio_new`` flag: 1 when given, or on the first
step with a silent zero image) and the state, and keeps the graph's new state (``state = outputs[1:]``).
"""
from __future__ import annotations

import json
import os

import numpy as np

__all__ = ["OnnxStream"]


class OnnxStream:
    """``step(frame, audio=None) -> logits`` over an ONNX stream graph; the state starts (and ``reset``) at zeros
    with the shapes the file's ``state`` metadata lists, for the first frame's batch."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "state" not in meta:
            raise ValueError(f"{path} is not a stream graph (no 'state' metadata): export it with --stream.")
        self.state_info = json.loads(meta["state"])
        self.classes = json.loads(meta["classes"]) if "classes" in meta else None
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.audio = "audio" in self.inputs   # the graph's own inputs, not a metadata entry a file may lack
        self.record: list[dict[str, np.ndarray]] | None = None   # a list: each step's feed is appended (calibration)
        self.reset()

    def reset(self) -> None:
        self.state: list[np.ndarray] | None = None
        self.frames = 0

    def step(self, frame: np.ndarray, audio: np.ndarray | None = None) -> np.ndarray:
        frame = np.asarray(frame, dtype=np.float32)
        frame = frame[None] if frame.ndim == 3 else frame
        if audio is not None and not self.audio:
            raise ValueError("this stream graph has no audio input: step(frame) takes no audio image.")
        if self.state is None:
            b = frame.shape[0]
            self.state = [np.zeros([b, *s["shape"][1:]], np.float32) for s in self.state_info]
        feed = [frame]
        if self.audio:
            new = audio is not None or self.frames == 0   # before any sound: a silent image, as StreamingTSAM
            image = np.zeros_like(frame) if audio is None else np.asarray(audio, dtype=np.float32).reshape(frame.shape)
            feed += [image, np.full((frame.shape[0], 1), float(new), np.float32)]
        feeds = dict(zip(self.inputs, feed + self.state))
        if self.record is not None:
            self.record.append(feeds)
        outputs = self.session.run(None, feeds)
        self.state = outputs[1:]
        self.frames += 1
        return outputs[0]
