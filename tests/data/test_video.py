"""Segment sampling, frame decoding (decord, PyAV fallback, JPEG folders) and clip transforms."""
import numpy as np
import pytest
import torch
from PIL import Image

from tsamlib.data.transforms import ClipTransform, fixed_crop_box, multiscale_crop_box
from tsamlib.data.decode import VideoReadError
from tsamlib.data.video import count_frames, load_clip, read_frames, segment_indices


# ---------------------------------------------------------------- segment sampling
def test_valid_indices_are_segment_centres():
    assert segment_indices(300, 8, "valid").tolist() == [18, 56, 93, 131, 168, 206, 243, 281]
    assert segment_indices(16, 4, "valid").tolist() == [2, 6, 10, 14]


def test_test_clips_are_evenly_offset():
    assert segment_indices(300, 8, "test", clip_index=0, n_clips=2).tolist() == [9, 46, 84, 121, 159, 196, 234, 271]
    assert segment_indices(300, 8, "test", clip_index=1, n_clips=2).tolist() == [28, 65, 103, 140, 178, 215, 253, 290]
    assert (segment_indices(300, 8, "test", n_clips=1) == segment_indices(300, 8, "valid")).all()


def test_short_video_repeats_frames_in_order():
    assert segment_indices(3, 8, "valid").tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert segment_indices(1, 4, "valid").tolist() == [0, 0, 0, 0]
    for seed in range(20):
        idx = segment_indices(3, 8, "train", rng=np.random.default_rng(seed))
        assert (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() <= 2


def test_train_indices_one_random_frame_per_segment():
    n, t, seen = 100, 8, set()
    for seed in range(200):
        idx = segment_indices(n, t, "train", rng=np.random.default_rng(seed))
        lo, hi = np.floor(np.arange(t) * n / t), np.ceil((np.arange(t) + 1) * n / t)
        assert ((idx >= lo) & (idx < hi)).all(), idx
        seen.add(int(idx[0]))
    assert seen == set(range(13))                      # every frame of segment 0 is drawn
    a = segment_indices(n, t, "train", rng=np.random.default_rng(5))
    assert (a == segment_indices(n, t, "train", rng=np.random.default_rng(5))).all()


def test_bad_sampling_arguments_raise():
    with pytest.raises(ValueError):
        segment_indices(0, 8, "valid")
    with pytest.raises(ValueError):
        segment_indices(10, 8, "val")
    with pytest.raises(ValueError):
        segment_indices(10, 8, "test", clip_index=2, n_clips=2)


# ---------------------------------------------------------------- decoding
def _pyav_frames(path):
    "Every frame PyAV decodes before the first error."
    import av
    out = []
    with av.open(str(path)) as c:
        try:
            for f in c.decode(video=0):
                out.append(f.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            pass
    return out


def test_kinetics_clips_decode_expected_indices(kinetics_clips):
    videos = sorted((kinetics_clips / "videos").glob("*.mp4"))
    assert len(videos) == 12
    for p in videos:
        n = count_frames(p)
        frames, idx = load_clip(p, 8, "valid")
        assert idx.tolist() == segment_indices(n, 8, "valid").tolist()
        assert frames.dtype == torch.uint8 and frames.shape[0] == 8 and frames.shape[-1] == 3
        assert frames.float().std() > 1, f"{p.name}: frames look blank"
    # content: decord frames equal PyAV's at the same indices, including the last frame
    p = min(videos, key=lambda v: v.stat().st_size)
    ref = _pyav_frames(p)
    got = read_frames(p, [0, len(ref) // 2, len(ref) - 1, len(ref) + 10])   # past the end: clamped
    for g, i in zip(got, [0, len(ref) // 2, len(ref) - 1, len(ref) - 1]):
        assert np.abs(g.numpy().astype(int) - ref[i].astype(int)).mean() < 2


def test_zoo_videos_decode(media_zoo):
    for name in ["fine", "no_audio", "odd_size", "portrait", "surround_48k", "audio_8k", "unicode_path"]:
        path, exp = media_zoo[name]
        frames, idx = load_clip(path, 8, "valid")
        assert frames.shape[0] == 8 and idx.max() < exp["n_frames"], name
    assert load_clip(media_zoo["odd_size"][0], 4)[0].shape == (4, 61, 97, 3)
    assert load_clip(media_zoo["portrait"][0], 4)[0].shape == (4, 96, 54, 3)
    frames, idx = load_clip(media_zoo["three_frames"][0], 8, "valid")
    assert idx.tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and frames.shape[0] == 8
    assert torch.equal(frames[0], frames[2]) and not torch.equal(frames[2], frames[3])


@pytest.mark.parametrize("name", ["empty", "text_renamed", "truncated", "audio_only"])
def test_broken_files_raise_clear_error(media_zoo, name):
    path = media_zoo[name][0]
    with pytest.raises(VideoReadError, match=path.name):
        load_clip(path, 4)


def test_broken_tail_falls_back_to_real_frame_count(tmp_path):
    import av
    p, rng = tmp_path / "faststart.mp4", np.random.default_rng(0)
    with av.open(str(p), "w", options={"movflags": "faststart"}) as c:   # index first, then data
        vs = c.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for _ in range(60):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8), format="rgb24")))
        c.mux(vs.encode())
    cut = tmp_path / "cut tail.mp4"
    cut.write_bytes(p.read_bytes()[: int(p.stat().st_size * 0.6)])
    n_real = len(_pyav_frames(cut))
    assert 0 < n_real < 60
    frames, idx = load_clip(cut, 8, "valid")
    assert frames.shape == (8, 48, 64, 3) and idx.tolist() == segment_indices(n_real, 8, "valid").tolist()


def test_frame_folder(tmp_path):
    d = tmp_path / "1234"
    d.mkdir()
    for i in range(10):
        Image.fromarray(np.full((30, 40, 3), 20 * i, np.uint8)).save(d / f"{i + 1:05d}.jpg", quality=95)
    frames, idx = load_clip(d, 4, "valid")
    assert idx.tolist() == [1, 3, 6, 8] and frames.shape == (4, 30, 40, 3)
    assert np.allclose(frames.float().mean((1, 2, 3)).numpy(), [20, 60, 120, 160], atol=3)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(VideoReadError, match="empty_dir"):
        load_clip(tmp_path / "empty_dir", 4)


def test_frame_folder_modes_sizes_and_non_files(tmp_path):
    """Grey and palette frames come back as RGB; a folder named like a frame is not a frame; frames of two sizes
    raise an error that names both sizes and the frames that have them."""
    d = tmp_path / "clip"
    d.mkdir()
    Image.fromarray(np.full((30, 40), 100, np.uint8)).save(d / "00001.jpg", quality=95)         # mode L
    Image.fromarray(np.full((30, 40, 3), 50, np.uint8)).convert("P").save(d / "00002.png")     # mode P
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(d / "00003.jpg", quality=95)     # RGB
    (d / "00004.jpg").mkdir()                                                                  # not a frame
    frames, idx = load_clip(d, 3, "valid")
    assert count_frames(d) == 3 and idx.tolist() == [0, 1, 2] and frames.shape == (3, 30, 40, 3)
    assert np.allclose(frames.float().mean((1, 2, 3)).numpy(), [100, 50, 200], atol=3)
    assert torch.equal(frames[0, ..., 0], frames[0, ..., 2])                                  # grey: R = B
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(d / "00005.jpg")
    with pytest.raises(VideoReadError, match=r"different sizes \(00001.jpg: 40x30, 00005.jpg: 40x20\)"):
        read_frames(d, [0, 3])


# ---------------------------------------------------------------- transforms
def test_transform_shapes_and_normalisation():
    frames = torch.full((4, 90, 160, 3), 128, dtype=torch.uint8)
    for train in (False, True):
        x = ClipTransform(img_size=64, resize=72, train=train)(frames, np.random.default_rng(0))
        assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
        expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
        assert torch.allclose(x.mean((0, 2, 3)), expected, atol=1e-3)


@pytest.mark.parametrize("kw", [dict(train=False), dict(train=True), dict(train=False, valid_view="short_side"),
                                dict(train=True, color_jitter=True, grayscale_p=0.5),
                                dict(train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))], ids=str)
def test_in_place_normalisation_equals_the_tensor_formula(kw):
    """The per-channel in-place normalisation gives, bit for bit, ((x.float() - 255 mean) / (255 std)) of the same
    crop (x: the resized, flipped, jittered uint8 crop), contiguous float32."""
    import torchvision.transforms.v2.functional as TF

    from tsamlib.data.transforms import color_jitter
    frames = torch.randint(0, 256, (5, 50, 70, 3), dtype=torch.uint8)
    tfm = ClipTransform(img_size=32, resize=40, **kw)
    mean = torch.tensor(tfm.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
    std = torch.tensor(tfm.std, dtype=torch.float32).view(1, 3, 1, 1) * 255
    for seed in range(6):
        got = tfm(frames, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)                   # the same draws, in the transform's order
        top, left, h, w = tfm.box(50, 70, rng)
        t, lt = int(round(top)), int(round(left))
        h, w = max(1, min(int(round(h)), 50 - t)), max(1, min(int(round(w)), 70 - lt))
        x = TF.resized_crop(frames.permute(0, 3, 1, 2), t, lt, h, w, [32, 32], antialias=True)
        if tfm.train and rng.random() < 0.5:
            x = x.flip(-1)
        x = x.float()
        if tfm.train and tfm.color_jitter:
            x = color_jitter(x / 255, rng) * 255
        if tfm.train and tfm.grayscale_p > 0 and rng.random() < tfm.grayscale_p:
            x = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1).expand(-1, 3, -1, -1)
        assert got.is_contiguous() and got.dtype == torch.float32
        assert torch.equal(got, (x - mean) / std)


def test_same_crop_for_all_frames_and_flip_switch():
    frames = torch.zeros((3, 60, 80, 3), dtype=torch.uint8)
    frames[:, :, 40:] = 255                                  # right half white
    flips = {True: set(), False: set()}
    for flip in (True, False):
        tfm = ClipTransform(img_size=32, resize=40, train=True, flip=flip, scales=(1,))
        for seed in range(30):
            x = tfm(frames, np.random.default_rng(seed))
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
            flips[flip].add(bool(x[0, 0, :, :8].mean() > x[0, 0, :, -8:].mean()))
    assert flips[False] == {False} and flips[True] == {False, True}


def test_crop_boxes():
    sizes = {int(256 * s) for s in (1, .875, .75, .66)}
    for seed in range(50):
        top, left, h, w = multiscale_crop_box(256, 340, rng=np.random.default_rng(seed))
        assert h in sizes and w in sizes and top + h <= 256 and left + w <= 340
    assert fixed_crop_box(256, 340, 224) == (16.0, 58.0, 224.0, 224.0)
    lefts = [fixed_crop_box(256, 340, 224, i, n_crops=3)[1] for i in range(3)]
    tops = [fixed_crop_box(340, 256, 224, i, n_crops=3)[0] for i in range(3)]
    assert lefts == [0.0, 58.0, 116.0] and tops == [0.0, 58.0, 116.0]
    with pytest.raises(ValueError):
        ClipTransform(img_size=224, resize=200)
