"""The TSAM model: shapes, audio branch, backbones, pretrained loading, complexity anchors."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from tsamlib.model.complexity import model_complexity
from tsamlib.model.pretrained import IN21K_FILENAME, resolve_pretrained
from tsamlib.model.shift import TemporalShift
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import create_tsam


@pytest.mark.parametrize("arch", ["resnet10t", "resnet18", "resnet34", "resnet50", "resnet50d", "resnet101"])
def test_backbones_forward(arch):
    m = create_tsam(arch, num_classes=3, n_frames=4, audio=True, shift=ShiftSpec(depth=2, f_div=4), n_insert=2).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 4, 3, 32, 32), torch.randn(2, 1, 3, 32, 32))
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    assert m.n_shifted_blocks == sum((len(getattr(m.backbone, f"layer{i}")) + 1) // 2 for i in range(1, 5))


def test_audio_feeds_logits_but_not_video_features():
    torch.manual_seed(0)
    m = create_tsam("resnet18", num_classes=5, n_frames=4, audio=True, shift=ShiftSpec(depth=1, f_div=8)).eval()
    v, a = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        f1, f2 = m.features(v, a), m.features(v, a + 1)
        assert torch.equal(f1[:, :4], f2[:, :4])  # the shift never moves audio into video segments
        assert not torch.equal(f1[:, 4], f2[:, 4])
        # logits = fc(mean over 5 segments) (dropout is off in eval)
        assert torch.allclose(m(v, a), m.fc(f1.mean(1)), atol=1e-6)


def test_audio_frame_is_unshifted_single_image():
    torch.manual_seed(0)
    m = create_tsam("resnet18", num_classes=5, n_frames=4, audio=True, shift=ShiftSpec(depth=2, f_div=4)).eval()
    plain = timm.create_model("resnet18", num_classes=0).eval()
    plain.load_state_dict({k.replace(".conv1.net.", ".conv1."): v for k, v in m.backbone.state_dict().items()})
    v, a = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m.features(v, a)[0, 4], plain(a[:, 0])[0], atol=1e-5)


def test_shift_changes_video_features_and_tsn_does_not_mix():
    torch.manual_seed(0)
    tsn = create_tsam("resnet18", num_classes=5, n_frames=4, shift=ShiftSpec(depth=0)).eval()
    for mod in tsn.modules():  # timm zero-inits the last BN of each residual branch: undo it, as training would
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(mod.weight, 0.5, 1.5)
    v = torch.randn(1, 4, 3, 32, 32)
    v2 = v.clone()
    v2[:, 3] += 1
    with torch.no_grad():
        assert torch.equal(tsn.features(v)[:, 0], tsn.features(v2)[:, 0])  # TSN: frames independent
        tsm = create_tsam("resnet18", num_classes=5, n_frames=4, shift=ShiftSpec(depth=1)).eval()
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
        create_tsam("resnet18", num_classes=5, n_frames=4, shift=ShiftSpec(depth=4))


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
    a = create_tsam("resnet18", num_classes=7, n_frames=4, shift=ShiftSpec(depth=2, f_div=4))
    torch.save(a.state_dict(), tmp_path / "tsam.pth")
    b = create_tsam("resnet18", num_classes=7, n_frames=8, shift=ShiftSpec(depth=4, f_div=4),
                    pretrained=tmp_path / "tsam.pth")
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
    kw = dict(num_classes=5, n_frames=20, audio=True, n_insert=2)
    zero = _trained_like(create_tsam("resnet18", shift=ShiftSpec(depth=2, f_div=4), **kw))
    keep = create_tsam("resnet18", shift=ShiftSpec(depth=2, f_div=4, pad="keep"), **kw).eval()
    keep.load_state_dict(zero.state_dict())
    assert keep.shift_pad == "keep" and keep.backbone.layer1[0].conv1.shift.pad == "keep"
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
        create_tsam("resnet18", num_classes=5, n_frames=4, shift=ShiftSpec(pad="wrap"))


@pytest.mark.parametrize("n_frames,k,n_insert,expected", [(8, 0, 1, 0), (8, 1, 1, 7), (16, 1, 1, 8), (16, 2, 2, 8),
                                                          (16, 4, 2, 15)])
def test_temporal_reach_is_shifted_blocks_times_depth(n_frames, k, n_insert, expected):
    """resnet18 has 8 blocks: TSM (every block, k=1) reaches 8 segments, TSAM (every 2nd block) 4k, both capped at
    T - 1. Measured by gradients, and the model handed in is left as it was (training mode, zero-init BN)."""
    from tsamlib.model.complexity import temporal_reach
    m = create_tsam("resnet18", num_classes=3, n_frames=n_frames, shift=ShiftSpec(depth=k, f_div=8 if k == 1 else 4),
                    n_insert=n_insert)
    before = {n: t.clone() for n, t in m.state_dict().items()}
    assert temporal_reach(m, img_size=16) == expected
    assert m.training and all(torch.equal(t, before[n]) for n, t in m.state_dict().items())


@pytest.mark.parametrize("pad", ["zero", "keep"])
def test_causal_model_features_depend_on_past_frames_only(pad):
    """``shift_direction="causal"`` through a whole resnet18 TSAM (eval mode): changing frame s changes the
    features of segments >= s and of none before it; the bidirectional model with the same weights does."""
    torch.manual_seed(0)
    kw = dict(num_classes=5, n_frames=6, audio=True, n_insert=2)
    causal = _trained_like(create_tsam("resnet18", shift=ShiftSpec(2, 4, pad=pad, direction="causal"), **kw))
    bidir = create_tsam("resnet18", shift=ShiftSpec(2, 4, pad=pad), **kw).eval()
    bidir.load_state_dict(causal.state_dict())
    assert causal.shift_direction == "causal" and bidir.shift_direction == "bidirectional"
    assert all(m.shift.direction == "causal" for m in causal.modules() if isinstance(m, TemporalShift))
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
        create_tsam("resnet18", num_classes=5, n_frames=4, shift=ShiftSpec(direction="forward"))


def test_causal_temporal_reach():
    """The causal model reaches as far (into the past only): 4 shifted blocks of depth 2 on resnet18."""
    from tsamlib.model.complexity import temporal_reach
    m = create_tsam("resnet18", num_classes=3, n_frames=12, shift=ShiftSpec(depth=2, f_div=4, direction="causal"),
                    n_insert=2)
    assert temporal_reach(m, img_size=16) == 8


# ------------------------------------------------------------------------------ the shift's settings in the model
class _ByHand(torch.nn.Module):
    """A shifted block's conv1 run from its settings by hand: the reference slice copies, then the layer."""

    def __init__(self, net, n_segments, k, f_div, n_shifted, pad, direction):
        super().__init__()
        self.net, self.settings = net, (n_segments, k, f_div, n_shifted, pad, direction)

    def forward(self, x):
        from tsamlib.model.shift_reference import ShiftLayout, shift_into
        t, k, f_div, n, pad, direction = self.settings
        x5 = x.view(x.shape[0] // t, t, *x.shape[1:])
        fold = (x.shape[1] // f_div) // k if k else 0
        return self.net(shift_into(torch.empty_like(x5), x5, ShiftLayout(k, fold, n, pad, direction)).flatten(0, 1))


def _by_hand(model, k, f_div, pad, direction):
    """A copy of ``model`` whose shifted blocks are :class:`_ByHand` with the settings given here, not the model's."""
    import copy
    ref = copy.deepcopy(model)
    for name, m in list(ref.backbone.named_modules()):
        if isinstance(m, TemporalShift):
            parent = ref.backbone.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], _ByHand(m.net, m.n_segments, k, f_div, model.n_frames, pad,
                                                             direction))
    return ref


@pytest.mark.parametrize("k, f_div, pad, direction, audio, n_insert", [
    (1, 8, "zero", "bidirectional", False, 1), (2, 4, "zero", "bidirectional", True, 2),
    (3, 4, "keep", "bidirectional", True, 1), (2, 4, "keep", "causal", False, 2),
    (0, 8, "zero", "bidirectional", True, 1),
])
def test_logits_and_gradients_equal_the_reference_shift_from_the_settings_bit_for_bit(k, f_div, pad, direction, audio,
                                                                                     n_insert):
    torch.manual_seed(0)
    model = _trained_like(create_tsam("resnet10t", num_classes=4, n_frames=5, audio=audio, n_insert=n_insert,
                                      shift=ShiftSpec(k, f_div, pad=pad, direction=direction)))
    ref = _by_hand(model, k, f_div, pad, direction)
    v = torch.randn(2, 5, 3, 32, 32)
    a = torch.randn(2, 1, 3, 32, 32) if audio else None
    grads = []
    for m in (model, ref):
        vi = v.clone().requires_grad_()
        y = m(vi, a)
        y.square().sum().backward()
        grads.append((y.detach(), vi.grad, [p.grad for p in m.parameters()]))
    (y, gv, gp), (y_ref, gv_ref, gp_ref) = grads
    assert torch.equal(y, y_ref) and torch.equal(gv, gv_ref)
    assert all(torch.equal(g, h) for g, h in zip(gp, gp_ref))


def test_state_dict_keys_are_the_backbones_with_the_shifted_conv1_under_net():
    """The settings are no tensors: a model's keys are timm's (shifted blocks' ``conv1.`` as ``conv1.net.``) and the
    head's, so checkpoints written before load."""
    model = create_tsam("resnet18", num_classes=3, n_frames=4, shift=ShiftSpec(2, 4), n_insert=2)
    plain = timm.create_model("resnet18", num_classes=0).state_dict()
    keys = list(model.state_dict())
    assert [k for k in keys if not k.startswith("fc.")] == ["backbone." + k.replace(".conv1.", ".conv1.net.")
                                                            if k.split(".")[0].startswith("layer")
                                                            and int(k.split(".")[1]) % 2 == 0 else "backbone." + k
                                                            for k in plain]
    assert keys[-2:] == ["fc.weight", "fc.bias"]


def test_a_model_pickles_and_copies_with_its_shift():
    import copy
    import io
    model = create_tsam("resnet10t", num_classes=3, n_frames=4, audio=True, shift=ShiftSpec(2, 4, pad="keep")).eval()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    v, a = torch.randn(1, 4, 3, 32, 32), torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        want = model(v, a)
        for other in (loaded, copy.deepcopy(model)):
            assert other.shift == model.shift == ShiftSpec(2, 4, 4, "keep")
            assert other.backbone.layer1[0].conv1.kernel == "torch"
            assert torch.equal(other(v, a), want)


def test_the_model_holds_one_spec_on_its_frames_and_reads_it_back_by_the_settings_names():
    model = create_tsam("resnet10t", num_classes=3, n_frames=6, shift=ShiftSpec(depth=3, f_div=4, direction="causal"))
    assert model.shift == ShiftSpec(3, 4, 6, direction="causal")
    assert (model.shift_depth, model.f_div, model.shift_pad, model.shift_direction) == (3, 4, "zero", "causal")
    assert {m.shift for m in model.modules() if isinstance(m, TemporalShift)} == {model.shift}
    assert create_tsam("resnet10t", num_classes=3, n_frames=6).shift == ShiftSpec(n_shifted=6)   # TSM's
    with pytest.raises(ValueError, match="n_shifted=5 but the model has n_frames=6"):
        create_tsam("resnet10t", num_classes=3, n_frames=6, shift=ShiftSpec(n_shifted=5))
    with pytest.raises(ValueError, match=r"shift=\{'shift_depth': 2\} must be a ShiftSpec"):
        create_tsam("resnet10t", num_classes=3, n_frames=6, shift={"shift_depth": 2})


def test_tsam_kwargs_maps_the_settings_names_to_one_spec():
    from tsamlib.config import RunConfig
    from tsamlib.model.tsam import check_model_settings, tsam_kwargs
    cfg = RunConfig(shift_depth=3, f_div=4, shift_pad="keep", shift_direction="causal", n_insert=2)
    kwargs = tsam_kwargs(cfg.model_kwargs())
    assert kwargs["shift"] == ShiftSpec(3, 4, pad="keep", direction="causal") and kwargs["n_insert"] == 2
    assert not {"shift_depth", "f_div", "shift_pad", "shift_direction"} & set(kwargs)
    assert tsam_kwargs(dict(n_frames=4)) == dict(n_frames=4)             # nothing said: create_tsam's default
    assert tsam_kwargs(dict(shift=ShiftSpec(2))) == dict(shift=ShiftSpec(2))
    with pytest.raises(ValueError, match="not both"):
        tsam_kwargs(dict(shift=ShiftSpec(2), f_div=4))
    with pytest.raises(ValueError, match="shift_depth=-1 is negative"):
        tsam_kwargs(dict(shift_depth=-1))
    assert check_model_settings("resnet10t", n_frames=4, shift_depth=2, f_div=4) is None
    assert check_model_settings("resnet10t", n_frames=4, shift=ShiftSpec(2, 4)) is None


def test_the_model_chooses_its_kernel_when_built_or_moved(monkeypatch):
    """Built on the CPU (or the meta device): the reference, whatever ``$TSAM_SHIFT_KERNEL`` says after; moved, the
    variable is read again; ``use_shift_kernel`` overrides the model's choice in its block."""
    from tsamlib.model.shift import use_shift_kernel
    monkeypatch.delenv("TSAM_SHIFT_KERNEL", raising=False)
    model = create_tsam("resnet10t", num_classes=3, n_frames=4, shift=ShiftSpec(2, 4)).eval()
    kernels = lambda m: {b.kernel for b in m.modules() if isinstance(b, TemporalShift)}   # noqa: E731
    assert kernels(model) == {"torch"}
    with torch.device("meta"):
        assert kernels(create_tsam("resnet10t", num_classes=3, n_frames=4)) == {"torch"}
    v = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        want = model(v)
        monkeypatch.setenv("TSAM_SHIFT_KERNEL", "autograd")
        assert kernels(model) == {"torch"} and torch.equal(model(v), want)
        assert kernels(model.to("cpu")) == {"autograd"} and torch.equal(model(v), want)
        monkeypatch.delenv("TSAM_SHIFT_KERNEL")
        assert kernels(model.to("cpu")) == {"torch"}
    y = model(v)
    with use_shift_kernel("autograd"):
        ya = model(v)
    assert torch.equal(y, ya)
    names = lambda t: {type(n).__name__ for n in _graph(t)}   # noqa: E731
    assert "_ShiftedConv2dFnBackward" in names(y) and "_ShiftedConv2dFnBackward" not in names(ya)


def _graph(y):
    """Every node of y's backward graph."""
    seen, stack = [], [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return seen
