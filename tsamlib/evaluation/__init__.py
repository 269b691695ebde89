"""The evaluation layer: finished runs and checkpoint files scored with fixed protocols, their errors
interpreted, videos predicted (imports ``model``, ``data``, ``runs``, ``config``).

    views       a run evaluated with fixed views (or the authors' protocol), its interpretation; a run or package
                found and loaded
    specs       what an evaluation takes, read once: a run's view settings (ViewsSpec), how videos are read (Loading)
    scoring     the protocols on a model and settings given directly
    protocols   the TSM family's test protocols (ours, TSM's 1-clip and dense 10x3, mmaction2's from its config)
    interpret   fastai's ClassificationInterpretation over stored probabilities, top losses with frames
    predict     top-k classes of one video with a run's model
    released    released checkpoints of the TSM family (the authors', TSM's, mmaction2's) on a manifest
    package     any checkpoint as a portable package: model.safetensors, config.json, a model card
    export      a run to ONNX, checked with onnxruntime on real clips before it is written
    quantize    a run's ONNX graph as INT8, kept only when it agrees with fp32 on the run's validation set
    onnx_stream an exported stream graph stepped with onnxruntime and numpy alone (no torch)
    stream      a video classified frame by frame with a causal run (the top classes after every frame); a live
                source (pipe, URL, device, growing file) followed as its frames arrive
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".views": ["evaluate_run", "evaluate_views", "evaluate_authors", "load_run_model", "load_model", "resolve_source",
               "has_audio", "run_vocab", "eval_path", "authors_eval_path", "interpretation"],
    ".specs": ["ViewsSpec", "Loading"],
    ".scoring": ["score_views", "score_authors", "per_class_accuracy", "eval_record"],
    ".protocols": ["TestProtocol", "AuthorsPasses", "views_protocol", "tsm_protocol", "mmaction2_protocol",
                   "file_protocols"],
    ".interpret": ["ViewsInterpretation", "learner_interpretation", "plot_top_losses"],
    ".predict": ["predict", "clip_views"],
    ".quantize": ["export_int8", "quantize_checked", "Int8Report"],
    ".export": ["export_onnx", "ExportReport", "ExportCheckError", "export_onnx_stream", "write_stream_onnx",
                "check_stream", "NotCausalError"],
    ".onnx_stream": ["OnnxStream"],
    ".stream": ["stream_video", "StreamStep", "stream_times", "stream_live", "LiveStream", "SourceStalled",
                "is_live_source", "live_rate"],
    ".released": ["RELEASED", "released_settings", "file_settings", "evaluate_checkpoint", "summary_table",
                  "build_model", "example_clips_manifest", "stand_in_checkpoint", "checkpoint_settings",
                  "STAND_IN_FORMATS"],
    ".package": ["convert_checkpoint", "model_card"],
})
