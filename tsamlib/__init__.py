"""tsamlib: TSAM (Temporal Shift with Audio Modality), the library behind the notebooks.

Import the modules you need (``from tsamlib.model import create_tsam``); this package keeps its own
import light so that ``python -m tsamlib`` and worker processes start quickly.
"""
__version__ = "0.1.0"
__all__ = ["__version__"]
