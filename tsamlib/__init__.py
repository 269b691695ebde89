"""tsamlib: TSAM (Temporal Shift with Audio Modality), the library behind the notebooks.

Import the modules you need (``from tsamlib.model import create_tsam``); this package keeps its own
import light so that ``python -m tsamlib`` and worker processes start quickly.
"""
import warnings

# fastai decorates a few helpers with torch.jit.script, which torch 2.14 deprecates with a FutureWarning at import
# time; that is fastai's to change, not our users'. Only this message, only from torch.jit's own module.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning,
                        module=r"torch\.jit\._script")

__version__ = "0.1.0"
__all__ = ["__version__"]
