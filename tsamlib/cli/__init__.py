"""The command line, one module per command of ``python -m tsamlib`` (``tsamlib/__main__.py`` only dispatches):
each holds the command's parser (``add_<command>``) and what it runs (``cmd_<command>``), which calls the layers
below with plain values and prints what they return. Importing a command module is light (no torch, no pandas), so
``python -m tsamlib --help`` stays quick; the layers are imported when a command runs.

    index       a manifest CSV for a real dataset
    synth       a synthetic labelled video dataset
    prepare     a manifest's clips as frame folders, sound and log-mels
    train       one run, a flag for every RunConfig setting
    notebooks   the main job: notebooks 01 -> 04 (or any) executed in order through papermill
    runs        the runs with their settings, status and top-1
    evaluate    a run's fixed multi-view evaluation
    predict     the top classes of a video, or (--stream) a line per frame fed
    export      a run's model to ONNX, checked with onnxruntime
    checkpoint  inspect / convert any TSM-family checkpoint
    kernel      the Jupyter kernel the notebooks run on (quiet about loopback sockets)
    args        what the commands share: typed values with ranges, a run or package found or said in one line
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".notebooks": ["NOTEBOOKS", "MAIN_JOB", "run_notebook", "run_pipeline", "NotebookFailed"],
})
