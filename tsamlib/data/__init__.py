"""The data layer: from video files to batches (imports ``runs`` and ``config`` only).

    manifest     one CSV row per clip: read, write, check; the rows a run uses
    index        manifests of Kinetics-400, Something-Something V1, list files, class folders
    probe        probing clips in worker processes (frames, fps, duration, audio, problems)
    workers      worker processes of one thread each that end with their parent; a retry in a fresh one
    decode       frames and sound decoded: decord, PyAV, frame folders (the readers every loader uses)
    video        TSN segment sampling and the clips read from a video or frame folder
    audio        the audio frame: waveform, 3-channel log-mel image, its disk cache
    transforms   crops, flips, colour jitter, normalisation of a clip
    loaders      datasets and fastai DataLoaders of clips (+ audio frame), multi-view evaluation sets
    datasets     the synthetic datasets by name (built on first use) and manifest paths
    synthetic    synthetic labelled videos (real H.264/AAC mp4 files)
    prepare      clips converted to JPEG frame folders + .wav + log-mels for fast loading (two frame layouts)
    extract      the authors' ffmpeg frame extraction (fps filter, scale=-1:H, JPEG -q:v 0) through PyAV
    skiplog      samples skipped or dropped by loader workers, counted and reported
    shards       WebDataset tar shards of prepared clips + their index, read per rank and worker (fsspec URLs)
"""
from .._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    ".manifest": ["COLUMNS", "SPLITS", "read_manifest", "write_manifest", "build_manifest", "summarize_manifest",
                  "check_manifest", "ManifestError", "read_table", "manifest_vocab", "usable_rows", "split_rows"],
    ".index": ["index_kinetics400", "index_something_v1", "index_list", "index_folder"],
    ".probe": ["probe_video", "probe_many", "VIDEO_EXTENSIONS"],
    ".decode": ["VideoReadError", "AudioError"],
    ".video": ["segment_indices", "view_indices", "load_clip", "load_views", "read_frames",
               "count_frames"],
    ".audio": ["DEFAULT_SR", "AudioFrame", "load_waveform", "log_mels", "log_mel_3ch", "MelCache"],
    ".transforms": ["ClipTransform", "norm_stats", "denormalize"],
    ".loaders": ["VideoDataset", "TSAMDataLoader", "TSAMDataLoaders", "DataSpec", "video_dataloaders",
                 "clip_views_dataset", "video_views", "views_dataloader", "show_clip_batch"],
    ".datasets": ["dataset_dir", "build_dataset", "dataset_manifest"],
    ".synthetic": ["KINDS", "make_synthetic_dataset", "describe"],
    ".prepare": ["prepare_dataset", "prepare_clip"],
    ".shards": ["write_shards", "read_index", "read_shards"],
    ".extract": ["extract_frames"],
})
