"""The precision setting: resolved per device, refused where the device cannot do it, really applied, recorded."""
import math

import pytest
import torch
from conftest import tiny_dls

from tsamlib.config import RunConfig
from tsamlib.runs.folder import start_run
from tsamlib.training.distributed import launch_record
from fastai.torch_core import set_seed
from tsamlib.training import fit_run, resolve_precision, tsam_learner


def test_precision_resolves_per_device_and_the_authors_preset_is_fp32():
    assert resolve_precision("auto", cuda=True) == "fp16" and resolve_precision("auto", cuda=False) == "fp32"
    assert resolve_precision("bf16", cuda=False) == "bf16"
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA GPU: on the CPU use 'bf16'"):
        resolve_precision("fp16", cuda=False)
    with pytest.raises(ValueError, match="precision='fp8'"):
        resolve_precision("fp8", cuda=True)
    with pytest.raises(ValueError, match="precision='fp8': choose one of"):
        RunConfig(precision="fp8")
    assert RunConfig().switches()["precision"] == "auto"
    assert RunConfig(preset="authors").switches()["precision"] == "fp32"
    assert launch_record(RunConfig(preset="authors"), 1, cuda=True)["precision"] == "fp32"   # their recipe on a GPU
    assert launch_record(RunConfig(), 1, cuda=True) == dict(
        world_size=1, nodes=1, processes_per_node=1, per_process_batch_size=8, batchnorm="per_process", device="cuda",
        precision="fp16", channels_last=True)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):   # refused before any run folder exists
        launch_record(RunConfig(precision="fp16"), 1, cuda=False)


def _dtypes_seen(learn):
    """The dtype of the first convolution's output during training, per batch."""
    seen = []
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype) if m.training else None)
    return seen


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_bf16_autocasts_on_the_cpu_and_fp32_does_not(tmp_path, precision, dtype):
    set_seed(0)
    learn = tsam_learner(tiny_dls(), arch="resnet10t", n_frames=4, audio=False, progress_bars=False,
                         precision=precision)
    assert learn.precision == precision
    seen = _dtypes_seen(learn)
    final = fit_run(learn, start_run("p", dict(precision=precision), runs_root=tmp_path), 1, 1e-3, seed=0)
    assert seen and set(seen) == {dtype}   # every training batch, in the precision asked for
    assert next(learn.model.parameters()).dtype == torch.float32 and math.isfinite(final["valid_loss"])
