"""The TSM family's test views (tsamlib.data.video.view_indices, fixed_crop_box's layouts), checked against numbers
worked out by hand from TSM's test_models.py / ops/dataset.py and mmaction2's SampleFrames, ThreeCrop, TenCrop,
CenterCrop, and against mmaction2's float arithmetic written out here."""
import numpy as np
import pytest
import torch

from tsamlib.data.transforms import ClipTransform, fixed_crop_box
from tsamlib.data.video import segment_indices, view_indices


def mmaction2_test_clips(n, t, twice):
    """mmaction2's 2D test offsets: float positions arange(T) * n / T (+ n / 2T for the centre), truncated."""
    base = np.arange(t) * (n / float(t))
    offsets = np.concatenate([base + n / (2.0 * t), base]) if twice else base + n / (2.0 * t)
    return np.mod(offsets, n).astype(np.int32).reshape(-1, t)


@pytest.mark.parametrize("n", [3, 8, 9, 17, 30, 61, 64, 300])
@pytest.mark.parametrize("t", [4, 8, 16])
def test_centre_and_twice_clips_are_mmaction2s(n, t):
    np.testing.assert_array_equal(view_indices(n, t, 2, "twice"), mmaction2_test_clips(n, t, twice=True))
    one = view_indices(n, t, 1, "tsm")
    if n > t:   # TSM's centre clip is mmaction2's, and ours ("segments", 1 clip)
        np.testing.assert_array_equal(one, mmaction2_test_clips(n, t, twice=False))
        np.testing.assert_array_equal(one[0], segment_indices(n, t, "valid"))
    else:       # TSM: a video of at most T frames gives its first frame T times
        assert (one == 0).all()


def test_dense_clips_by_hand():
    # 70 frames, T=8: stride 64 // 8 = 8; starts linspace(0, 70 - 64, 10) as integers: 0 0 1 2 2 3 4 4 5 6
    got = view_indices(70, 8, 10, "dense")
    assert got.shape == (10, 8)
    assert got[:, 0].tolist() == [0, 0, 1, 2, 2, 3, 4, 4, 5, 6]
    assert got[9].tolist() == [6, 14, 22, 30, 38, 46, 54, 62]
    # 20 frames (< 64): every clip starts at 0, positions wrap around: (8 i) mod 20
    assert (view_indices(20, 8, 10, "dense") == [0, 8, 16, 4, 12, 0, 8, 16]).all()
    with pytest.raises(ValueError, match="at most 64 frames per clip"):
        view_indices(100, 65, 10, "dense")
    with pytest.raises(ValueError, match="places 2 clip|has 2 clips"):
        view_indices(100, 8, 3, "twice")
    with pytest.raises(ValueError, match="sampling='nope'"):
        view_indices(100, 8, 1, "nope")


def test_crop_places_by_hand():
    # TSM's GroupFullResSample (crop 256 of a 256 x 342 frame): steps of (342 - 256) // 4 = 21: x = 0, 84, 42
    assert [fixed_crop_box(256, 342, 256, k, 3, "tsm")[1] for k in range(3)] == [0, 84, 42]
    assert [fixed_crop_box(256, 342, 256, k, 3, "tsamlib")[1] for k in range(3)] == [0, 43, 86]  # ours: to the edge
    # portrait: TSM moves x only (0 steps of 0) and keeps y at 2 steps: three equal crops
    assert {fixed_crop_box(342, 256, 256, k, 3, "tsm")[:2] for k in range(3)} == {(42, 0)}
    # mmaction2's ThreeCrop: steps of (342 - 256) // 2 = 43 along the long side: 0, 86, 43
    assert [fixed_crop_box(256, 342, 256, k, 3, "mmaction2")[1] for k in range(3)] == [0, 86, 43]
    assert [fixed_crop_box(342, 256, 256, k, 3, "mmaction2")[0] for k in range(3)] == [0, 86, 43]
    # mmaction2's TenCrop 224 of 256 x 342: x steps 29, y steps 8; (y, x) of its 5 places, each twice (flip)
    places = [fixed_crop_box(256, 342, 224, k, 10, "mmaction2")[:2] for k in range(10)]
    assert places[::2] == places[1::2] == [(0, 0), (0, 116), (32, 0), (32, 116), (16, 58)]
    # mmaction2's CenterCrop floors, ours rounds half to even: (343 - 224) / 2 = 59.5
    assert fixed_crop_box(256, 343, 224, 1, 1, "mmaction2")[:2] == (16, 59)
    assert fixed_crop_box(256, 343, 224, 1, 1, "tsamlib")[:2] == (16, 60)
    with pytest.raises(ValueError, match=r"n_crops must be one of \(1, 3\) for the tsm layout"):
        fixed_crop_box(256, 342, 224, 0, 10, "tsm")
    with pytest.raises(ValueError, match="or 10 \\(mmaction2's TenCrop\\)"):
        ClipTransform(224, 256, n_crops=5, crop_layout="mmaction2")


def test_tencrop_views_are_the_crops_and_their_mirror_images():
    frames = torch.randint(0, 255, (2, 48, 64, 3), dtype=torch.uint8)
    tfm = ClipTransform(40, 48, n_crops=10, crop_layout="mmaction2", mean=(0, 0, 0), std=(1 / 255,) * 3)
    views = [tfm(frames, crop_index=k) for k in range(10)]
    for k, (y, x) in enumerate([(0, 0), (0, 24), (8, 0), (8, 24), (4, 12)]):   # steps (64-40)//4, (48-40)//4
        want = frames[:, y:y + 40, x:x + 40].permute(0, 3, 1, 2).float()
        torch.testing.assert_close(views[2 * k], want)
        torch.testing.assert_close(views[2 * k + 1], want.flip(-1))
