"""The one checked loader of ``.pth`` files: :func:`safe_load` (``torch.load(..., weights_only=True)``) and
:class:`CheckpointError`, which names the file, what it holds and what to do.

Light on purpose (torch only): the model layer reads pretrained weights with it, the training layer checkpoints.
A file that would need code to be unpickled is never unpickled, and no message suggests loading it another way.
"""
from __future__ import annotations

import errno
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["CheckpointError", "safe_load"]


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that cannot be used: the message names the file, what is wrong (``problem``) and what to do
    (``hint``). A RuntimeError for training code, a ValueError for code that was given a bad file."""

    def __init__(self, problem: str, hint: str = ""):
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem, self.hint = problem, hint


_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)")


def _looks_like_text(head: bytes) -> str | None:
    """The first line of ``head`` when the file starts as text, else None."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.splitlines()[0][:60] if text.strip() and text.isprintable() or "\n" in text[:200] else None


def safe_load(path: str | os.PathLike, allowed_globals: Sequence[Any] = (), hint: str = "") -> Any:
    """What a ``.pth`` file holds, read with ``torch.load(..., weights_only=True)``: tensors, plain containers and
    numbers, and ``allowed_globals`` (e.g. the numpy scalar types of the authors' checkpoints). The one place
    tsamlib calls ``torch.load``.

    Anything else raises :class:`CheckpointError` naming the file and what it holds (missing, empty, text,
    truncated, not a pickle of tensors, or a pickle that would import code: such a file is never unpickled, and no
    message suggests loading it another way), with ``hint`` saying what to do."""
    path = Path(path)
    try:
        if not path.is_file():   # a FIFO would block forever, a device would read without end
            raise CheckpointError(f"{path} {'is not a regular file' if path.exists() else 'does not exist'}", hint)
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(512)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist", hint) from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror or e})", hint) from None
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): its writer was killed or the disk was full", hint)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allowed_globals)):
            warnings.filterwarnings("ignore", message="Detected pickle protocol")   # named below
            return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as e:
        why = str(e).split(". ")[0].splitlines()[0][:150] if str(e).strip() else "unexpected end of file"
        raise CheckpointError(f"{path} ({size} bytes) is truncated or corrupt ({type(e).__name__}: {why})",
                              hint) from None
    except OSError as e:
        if e.errno == errno.EINVAL:   # the zip reader seeking past the end of a cut file
            raise CheckpointError(f"{path} ({size} bytes) is truncated or corrupt (its archive ends early)",
                                  hint) from None
        raise CheckpointError(f"{path} cannot be read ({e.strerror or e})", hint) from None
    except Exception as e:  # noqa: BLE001  (UnpicklingError, KeyError, ValueError: what the bytes are is named)
        code = _GLOBAL.search(str(e))
        text = _looks_like_text(head)
        if code:
            what = (f"a pickle that needs {code.group(1)}: objects, not only weights, so it was not unpickled (a "
                    "file from an unknown source can run any code when unpickled)")
        elif text is not None:
            what = f"text, not a checkpoint (it starts {text!r})"
        else:
            what = f"bytes that are not a PyTorch checkpoint of tensors ({type(e).__name__})"
        raise CheckpointError(f"{path} ({size} bytes) cannot be read weights-only: it holds {what}", hint) from None
