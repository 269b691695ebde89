"""The runs layer: run folders and what is written into them (imports ``config`` only).

    folder        ``results/runs/<run_id>/``: create, lock, resume, list, open (``load_run``)
    checkpoints   model + optimiser after every epoch, the best epoch, resuming
    loader        ``safe_load``: the one checked reader of .pth files (weights only)
    notebook      the executed notebook of a run (papermill), made portable
    progress      the progress bar: text in notebooks, none under papermill
    fileio        atomic writes, JSON, the one file lock, the repository's paths
    provenance    package versions, git commit, machine: recorded in every run
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".folder": ["Run", "RunLock", "RunLockedError", "runs_dir", "read_metrics", "start_run", "open_run", "load_run",
                "resolve_run", "run_state", "is_finished", "has_weights", "unique_run_id", "runs_table", "latest_run"],
    ".checkpoints": ["Checkpoint", "BestCheckpoint", "load_checkpoint", "load_latest_checkpoint", "save_checkpoint",
                     "read_best"],
    ".loader": ["safe_load", "CheckpointError"],
    ".notebook": ["save_notebook_copy", "executed_by_papermill", "make_portable"],
    ".fileio": ["repo_root", "relative_to_repo", "mel_cache_dir", "atomic_write_json", "read_json", "NotWritableError",
                "writable_folder"],
    ".provenance": ["environment_info"],
})
