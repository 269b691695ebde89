"""The TSAM model: shapes, audio branch, backbones, pretrained loading, complexity anchors."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from tsamlib.model.complexity import model_complexity
from tsamlib.model.pretrained import IN21K_FILENAME, resolve_pretrained
from tsamlib.model.shift import TemporalShift
from tsamlib.model.tsam import create_tsam


@pytest.mark.parametrize("arch", ["resnet10t", "resnet18", "resnet34", "resnet50", "resnet50d", "resnet101"])
def test_backbones_forward(arch):
    m = create_tsam(arch, num_classes=3, n_frames=4, audio=True, shift_depth=2, f_div=4, n_insert=2).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 4, 3, 32, 32), torch.randn(2, 1, 3, 32, 32))
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    assert m.n_shifted_blocks == sum((len(getattr(m.backbone, f"layer{i}")) + 1) // 2 for i in range(1, 5))


def test_audio_feeds_logits_but_not_video_features():
    torch.manual_seed(0)
    m = create_tsam("resnet18", num_classes=5, n_frames=4, audio=True, shift_depth=1, f_div=8).eval()
    v, a = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        f1, f2 = m.features(v, a), m.features(v, a + 1)
        assert torch.equal(f1[:, :4], f2[:, :4])  # the shift never moves audio into video segments
        assert not torch.equal(f1[:, 4], f2[:, 4])
        # logits = fc(mean over 5 segments) (dropout is off in eval)
        assert torch.allclose(m(v, a), m.fc(f1.mean(1)), atol=1e-6)


def test_audio_frame_is_unshifted_single_image():
    torch.manual_seed(0)
    m = create_tsam("resnet18", num_classes=5, n_frames=4, audio=True, shift_depth=2, f_div=4).eval()
    plain = timm.create_model("resnet18", num_classes=0).eval()
    plain.load_state_dict({k.replace(".conv1.net.", ".conv1."): v for k, v in m.backbone.state_dict().items()})
    v, a = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m.features(v, a)[0, 4], plain(a[:, 0])[0], atol=1e-5)


def test_shift_changes_video_features_and_tsn_does_not_mix():
    torch.manual_seed(0)
    tsn = create_tsam("resnet18", num_classes=5, n_frames=4, shift_depth=0).eval()
    for mod in tsn.modules():  # timm zero-inits the last BN of each residual branch: undo it, as training would
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
    v = torch.randn(1, 4, 3, 32, 32)
    v2 = v.clone()
    v2[:, 3] += 1
    with torch.no_grad():
        assert torch.equal(tsn.features(v)[:, 0], tsn.features(v2)[:, 0])  # TSN: frames independent
        tsm = create_tsam("resnet18", num_classes=5, n_frames=4, shift_depth=1).eval()
        tsm.load_state_dict(tsn.state_dict())
        assert not torch.equal(tsm.features(v)[:, 0], tsm.features(v2)[:, 0])  # frame 3 reaches frame 0
    assert all(isinstance(mod, TemporalShift) for mod in [tsn.backbone.layer1[0].conv1])  # same code path


def test_input_errors():
    m = create_tsam("resnet18", num_classes=5, n_frames=4, audio=True)
    with pytest.raises(ValueError, match="audio=True"):
        m(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 4, 3, H, W\)"):
        m(torch.randn(1, 3, 3, 32, 32), torch.randn(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="shift_depth=4"):
        create_tsam("resnet18", num_classes=5, n_frames=4, shift_depth=4)


class Pickled:
    """An arbitrary object: a weights_only load must refuse it."""


def _imagenet_like_state(arch="resnet18", seed=1, classes=1000):
    torch.manual_seed(seed)
    return timm.create_model(arch, num_classes=classes).state_dict()


@pytest.mark.parametrize("fmt", ["pth_nested_module", "safetensors", "plain_pt"])
def test_local_checkpoint_weights_arrive(tmp_path, fmt, capsys):
    sd = _imagenet_like_state()
    if fmt == "pth_nested_module":
        path = tmp_path / "ck.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    elif fmt == "safetensors":
        path = tmp_path / "ck.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "ck.pt"
        torch.save(sd, path)
    m = create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=str(path))
    got = m.backbone.state_dict()
    assert torch.equal(got["layer3.1.conv1.net.weight"], sd["layer3.1.conv1.weight"])  # shifted conv
    assert torch.equal(got["layer3.1.conv2.weight"], sd["layer3.1.conv2.weight"])
    assert torch.equal(got["bn1.running_mean"], sd["bn1.running_mean"])
    rep = m.load_report
    assert rep.missing == ["fc.weight", "fc.bias"] or set(rep.missing) <= {"fc.weight", "fc.bias"}
    assert any("fc.weight" in s for s in rep.skipped_classifier) and not rep.unexpected
    assert "classifier replaced by a new one" in capsys.readouterr().out


def test_checkpoint_of_same_head_loads_classifier_and_reports_unexpected(tmp_path):
    sd = _imagenet_like_state(classes=7)
    sd["extra.weight"] = torch.zeros(2)
    path = tmp_path / "ck.pth"
    torch.save({"model": sd}, path)
    m = create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=path)
    assert torch.equal(m.fc.weight, sd["fc.weight"])
    assert m.load_report.unexpected == ["extra.weight"] and m.load_report.missing == []


def test_tsam_checkpoint_round_trip(tmp_path):
    a = create_tsam("resnet18", num_classes=7, n_frames=4, shift_depth=2, f_div=4)
    torch.save(a.state_dict(), tmp_path / "tsam.pth")
    b = create_tsam("resnet18", num_classes=7, n_frames=8, shift_depth=4, f_div=4, pretrained=tmp_path / "tsam.pth")
    assert torch.equal(b.backbone.layer1[0].conv1.net.weight, a.backbone.layer1[0].conv1.net.weight)
    assert torch.equal(b.fc.weight, a.fc.weight)


def test_unsafe_or_wrong_checkpoints(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights-only"):
        create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=bad)
    torch.save({"state_dict": _imagenet_like_state(), "cfg": Pickled()}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights-only"):  # arbitrary objects are refused, never unpickled
        create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=tmp_path / "pickled.pth")
    torch.save(_imagenet_like_state("resnet50"), tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="another arch"):
        create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=tmp_path / "r50.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_tsam("resnet18", num_classes=7, n_frames=4, pretrained=str(tmp_path / "missing.pth"))


def test_shorthands_and_tags(tmp_path, monkeypatch):
    assert resolve_pretrained("in1k", "resnet50") == ("timm", "resnet50.tv_in1k")
    assert resolve_pretrained("in1k", "resnet10t") == ("timm", "resnet10t")
    assert resolve_pretrained("resnet50.a1_in1k", "resnet50") == ("timm", "resnet50.a1_in1k")
    assert resolve_pretrained(None, "resnet50") is None
    with pytest.raises(ValueError, match="arch"):
        resolve_pretrained("resnet50.a1_in1k", "resnet18")
    monkeypatch.setenv("TSAM_WEIGHTS", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=IN21K_FILENAME):
        resolve_pretrained("in21k", "resnet50")
    torch.save(_imagenet_like_state("resnet50", classes=11221), tmp_path / IN21K_FILENAME)
    assert resolve_pretrained("in21k", "resnet50") == ("file", str(tmp_path / IN21K_FILENAME))
    m = create_tsam("resnet50", num_classes=400, n_frames=8, pretrained="in21k")
    assert m.load_report.loaded > 300 and m.load_report.skipped_classifier


def test_timm_tag_goes_through_timm(monkeypatch):
    calls = []
    real = timm.create_model

    def fake(name, pretrained=False, **kw):
        calls.append((name, pretrained))
        return real(name.split(".")[0], pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    m = create_tsam("resnet18", num_classes=3, n_frames=4, pretrained="in1k")
    assert ("resnet18.tv_in1k", True) in calls and m.load_report.source == "timm:resnet18.tv_in1k"


def test_timm_tag_offline_error(monkeypatch):
    def fail(name, pretrained=False, **kw):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", fail)
    with pytest.raises(RuntimeError, match="pass the file path"):
        create_tsam("resnet18", num_classes=3, n_frames=4, pretrained="resnet18.a1_in1k")


def test_complexity_anchors():
    tsm8 = model_complexity("resnet50", 400, 8, shift_depth=1, f_div=8)
    assert tsm8["params"] == 24_327_632
    assert tsm8["gmacs"] == pytest.approx(32.88, rel=0.01)
    tsm16 = model_complexity("resnet50", 400, 16, shift_depth=1, f_div=8)
    assert tsm16["gmacs"] == pytest.approx(65.8, rel=0.01)
    tsam16 = model_complexity("resnet50", 400, 16, audio=True, shift_depth=4, f_div=4, n_insert=2)
    fc = 2048 * 400  # the classifier runs once per clip, the backbone once per image: 17 images vs 16
    assert tsam16["macs"] - fc == (tsm16["macs"] - fc) * 17 // 16
    tsn16 = model_complexity("resnet50", 400, 16, shift_depth=0)
    assert tsn16["macs"] == tsm16["macs"]  # the shift adds no arithmetic


def _trained_like(model):
    """Undo timm's zero init of each residual branch's last BN (as training would), so the shift shows."""
    torch.manual_seed(3)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
    return model.eval()


def test_shift_pad_keep_differs_from_zero_only_at_the_borders():
    # resnet18, n_insert=2: 4 shifted blocks of depth k=2. The border segments [0, 2) and [T-2, T) differ after
    # the first shift, and each later shift carries the difference k segments further in: after 4 shifts
    # segments [8, T-8) are still identical, and so is the audio segment (never shifted, never fed).
    torch.manual_seed(0)
    kw = dict(num_classes=5, n_frames=20, audio=True, shift_depth=2, f_div=4, n_insert=2)
    zero = _trained_like(create_tsam("resnet18", **kw))
    keep = create_tsam("resnet18", shift_pad="keep", **kw).eval()
    keep.load_state_dict(zero.state_dict())
    assert keep.shift_pad == "keep" and keep.backbone.layer1[0].conv1.shift_pad == "keep"
    inputs = {}
    for name, m in (("zero", zero), ("keep", keep)):
        conv = m.backbone.layer1[0].conv1.net  # the first shifted conv: what it sees after the shift
        conv.register_forward_pre_hook(lambda mod, args, name=name: inputs.__setitem__(name, args[0].view(21, -1)))
    v, a = torch.randn(1, 20, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        fz, fk = zero.features(v, a), keep.features(v, a)
    f = (64 // 4) // 2
    differs = (inputs["zero"] != inputs["keep"]).view(21, 64, -1).any(-1)
    border = torch.zeros(21, 64, dtype=torch.bool)
    border[19, 0:f] = border[0, f:2 * f] = border[18:20, 2 * f:3 * f] = border[0:2, 3 * f:4 * f] = True
    assert torch.equal(differs, border)
    assert torch.equal(fz[0, 8:12], fk[0, 8:12]) and torch.equal(fz[0, 20], fk[0, 20])
    assert not torch.equal(fz[0, 0], fk[0, 0]) and not torch.equal(fz[0, 19], fk[0, 19])
    with pytest.raises(ValueError, match="shift_pad"):
        create_tsam("resnet18", num_classes=5, n_frames=4, shift_pad="wrap")


@pytest.mark.parametrize("n_frames,k,n_insert,expected", [(8, 0, 1, 0), (8, 1, 1, 7), (16, 1, 1, 8), (16, 2, 2, 8),
                                                          (16, 4, 2, 15)])
def test_temporal_reach_is_shifted_blocks_times_depth(n_frames, k, n_insert, expected):
    """resnet18 has 8 blocks: TSM (every block, k=1) reaches 8 segments, TSAM (every 2nd block) 4k, both capped at
    T - 1. Measured by gradients, and the model handed in is left as it was (training mode, zero-init BN)."""
    from tsamlib.model.complexity import temporal_reach
    m = create_tsam("resnet18", num_classes=3, n_frames=n_frames, shift_depth=k, f_div=8 if k == 1 else 4,
                    n_insert=n_insert)
    before = {n: t.clone() for n, t in m.state_dict().items()}
    assert temporal_reach(m, img_size=16) == expected
    assert m.training and all(torch.equal(t, before[n]) for n, t in m.state_dict().items())


@pytest.mark.parametrize("pad", ["zero", "keep"])
def test_causal_model_features_depend_on_past_frames_only(pad):
    """``shift_direction="causal"`` through a whole resnet18 TSAM (eval mode): changing frame s changes the
    features of segments >= s and of none before it; the bidirectional model with the same weights does."""
    torch.manual_seed(0)
    kw = dict(num_classes=5, n_frames=6, audio=True, shift_depth=2, f_div=4, n_insert=2, shift_pad=pad)
    causal = _trained_like(create_tsam("resnet18", shift_direction="causal", **kw))
    bidir = create_tsam("resnet18", **kw).eval()
    bidir.load_state_dict(causal.state_dict())
    assert causal.shift_direction == "causal" and bidir.shift_direction == "bidirectional"
    assert all(m.shift_direction == "causal" for m in causal.modules() if isinstance(m, TemporalShift))
    v, a = torch.randn(1, 6, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        base, base_bi = causal.features(v, a), bidir.features(v, a)
        for s in range(6):
            v2 = v.clone()
            v2[:, s] += 1
            changed = (causal.features(v2, a) != base).any(-1)[0]
            assert not changed[:s].any() and changed[s:6].all() and not changed[6], (s, changed)
            if s > 0:
                assert (bidir.features(v2, a) != base_bi).any(-1)[0, :s].any()   # the future reaches back
    with pytest.raises(ValueError, match=r"shift_direction='forward': choose one of \['bidirectional', 'causal'\]"):
        create_tsam("resnet18", num_classes=5, n_frames=4, shift_direction="forward")


def test_causal_temporal_reach():
    """The causal model reaches as far (into the past only): 4 shifted blocks of depth 2 on resnet18."""
    from tsamlib.model.complexity import temporal_reach
    m = create_tsam("resnet18", num_classes=3, n_frames=12, shift_depth=2, f_div=4, n_insert=2,
                    shift_direction="causal")
    assert temporal_reach(m, img_size=16) == 8
