"""The model layer: the temporal shift and the TSAM network (imports ``runs`` and ``config`` only).

    shift_reference   what the shift computes: ShiftSpec (its settings), channel groups, borders (torch only)
    shift             the shift as autograd ops and a module, inserted into a ResNet's blocks
    shift_triton      fused Triton kernels of the shift (CUDA; CPU under ``TRITON_INTERPRET=1``)
    tsam              ``create_tsam``: a timm ResNet with the shift, T video frames + one audio frame
    pretrained        ImageNet-1K/21K weights and checkpoint files: resolved, checked against the model, loaded
    formats           checkpoint files of the TSM family (tsamlib, TSM, mmaction2, the authors'), told from their keys
    complexity        parameters, MACs, temporal reach
    onnx_export       the model as an ONNX graph of standard operators (the shift as plain ops, dynamic batch)
    online            a causal model run frame by frame on a stream (buffers of the last k frames per block)
    online_onnx       one stream step with its state as explicit inputs and outputs, for an ONNX graph
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".tsam": ["TSAM", "create_tsam", "create_tsam_from", "create_backbone", "tsam_kwargs"],
    ".shift": ["temporal_shift", "shifted_conv2d", "TemporalShift", "insert_temporal_shift", "use_shift_kernel"],
    ".onnx_export": ["export_model_onnx", "check_onnx_graph"],
    ".online": ["StreamingTSAM"],
    ".online_onnx": ["StatefulStep", "export_stream_onnx"],
    ".shift_reference": ["ShiftSpec", "ShiftLayout", "SHIFT_PADS", "SHIFT_DIRECTIONS", "shift_into"],
    ".pretrained": ["resolve_pretrained", "load_backbone_weights", "LoadReport", "check_fits",
                    "save_authors_checkpoint", "save_tsm_checkpoint", "save_mmaction2_checkpoint"],
    ".formats": ["read_checkpoint", "inspect_checkpoint", "CheckpointInfo", "UnsupportedCheckpoint", "FORMATS"],
    ".complexity": ["count_params", "count_macs", "model_complexity", "temporal_reach"],
})
