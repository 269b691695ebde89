"""The authors' released checkpoints (github.com/aav-antonov/TSAM): layout, key mapping, identical logits.

The authors' model is re-created here from its module names alone (not their code): ``nn_input`` (no tensors),
``nn_backbone`` (a ResNet ``base_model`` whose ``fc`` is an identity, the shifted convs held as ``.layer``, and a
dropout), ``last_fc``; their saver stores ``{data_state, model_state: {part: part.state_dict()},
optimizer_state_dict}`` with ``data_state = {"epoch": int, "best_score <ID>": numpy.float64}``.
"""
import numpy as np
import pytest
import timm
import torch
from torch import nn

from tsamlib.model import create_tsam
from tsamlib.pretrained import AUTHORS_LAYOUT, _authors_safe_globals, authors_key, canonical_key, read_checkpoint

SETTINGS = dict(n_frames=6, shift_depth=2, f_div=4, n_insert=2, m_insert=0)


def keep_border_shift(x, n_segments, n_shifted, f_div, depth):
    """Their shift, written from its definition: a copy of the input, then for each depth d the group from t+d
    and the group from t-d overwrite the segments that have a source; the rest keep their own values."""
    bt, c, h, w = x.shape
    x = x.view(bt // n_segments, n_segments, c, h, w)
    f = (c // f_div) // depth
    out = x.clone()
    for d in range(1, depth + 1):
        ahead, behind = slice((2 * d - 2) * f, (2 * d - 1) * f), slice((2 * d - 1) * f, 2 * d * f)
        out[:, : n_shifted - d, ahead] = x[:, d:n_shifted, ahead]
        out[:, d:n_shifted, behind] = x[:, : n_shifted - d, behind]
    return out.view(bt, c, h, w)


class ShiftedConv(nn.Module):
    """Their wrapper's naming: the wrapped conv is ``.layer``."""

    def __init__(self, layer, n_segments, n_shifted, f_div, depth):
        super().__init__()
        self.layer = layer
        self.args = (n_segments, n_shifted, f_div, depth)

    def forward(self, x):
        return self.layer(keep_border_shift(x, *self.args))


class InputPart(nn.Module):
    """``nn_input``: video segments then the audio segment, one clip per row; no tensors."""

    def forward(self, video, audio):
        return torch.cat([video, audio], dim=1) if audio is not None else video


class BackbonePart(nn.Module):
    """``nn_backbone``: ``base_model`` (a ResNet, ``fc`` an identity, shifts in the chosen blocks) + dropout."""

    def __init__(self, arch, n_segments, n_shifted, f_div, shift_depth, n_insert, m_insert):
        super().__init__()
        self.base_model = timm.create_model(arch, pretrained=False)
        self.features_dim_out = self.base_model.fc.in_features
        self.base_model.fc = nn.Identity()
        for stage in (self.base_model.layer1, self.base_model.layer2, self.base_model.layer3, self.base_model.layer4):
            for i, block in enumerate(stage):
                if i % n_insert == m_insert:
                    block.conv1 = ShiftedConv(block.conv1, n_segments, n_shifted, f_div, shift_depth)
        self.dropout_last = nn.Dropout(0.5)

    def forward(self, x):
        return self.dropout_last(self.base_model(x.reshape((-1,) + x.shape[-3:])))


class AuthorsModel(nn.Module):
    """Their top module: the three parts, listed in ``model_layers`` (what their saver iterates)."""

    def __init__(self, arch, num_classes, audio=True, n_frames=6, shift_depth=2, f_div=4, n_insert=2, m_insert=0):
        super().__init__()
        n_segments = n_frames + int(audio)
        self.nn_input = InputPart()
        self.nn_backbone = BackbonePart(arch, n_segments, n_frames, f_div, shift_depth, n_insert, m_insert)
        self.last_num = self.nn_backbone.features_dim_out
        self.last_fc = nn.Linear(self.last_num, num_classes)
        self.model_layers = {"nn_input": self.nn_input, "nn_backbone": self.nn_backbone, "last_fc": self.last_fc}

    def forward(self, video, audio):
        x = self.nn_input(video, audio)
        n_segments = x.shape[1]
        x = self.nn_backbone(x).view(-1, n_segments, self.last_num)  # per-segment features
        return self.last_fc(x.mean(dim=1))  # averaged over the segments, then their classifier


def trained_like(model, seed=0):
    """Random weights and BN statistics everywhere (no zero-initialised residual branch hides the shift)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.num_batches_tracked.fill_(1000)
    return model


def save_like_authors(model, path, epoch=51, best=np.float64(0.734)):
    """Their saver: one SGD step for real momentum buffers, then the three-part dict."""
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    out = model(torch.randn(2, 6, 3, 32, 32), torch.randn(2, 1, 3, 32, 32))
    out.logsumexp(1).mean().backward()
    optimizer.step()
    torch.save({"data_state": {"epoch": epoch, "best_score unbalanced": best},
                "model_state": {name: part.state_dict() for name, part in model.model_layers.items()},
                "optimizer_state_dict": optimizer.state_dict()}, path)
    return model.eval()


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = trained_like(AuthorsModel("resnet18", num_classes=5, **SETTINGS))
    path = tmp_path_factory.mktemp("authors") / "resnet18_tiny.ckpt.pth.tar"
    return save_like_authors(model, path), path


def test_checkpoint_holds_the_authors_layout(authors_checkpoint):
    _, path = authors_checkpoint
    with torch.serialization.safe_globals(_authors_safe_globals()):  # numpy float64: nothing else needed
        raw = torch.load(path, weights_only=True)
    assert set(raw) == {"data_state", "model_state", "optimizer_state_dict"}
    assert set(raw["model_state"]) == {"nn_input", "nn_backbone", "last_fc"} and not raw["model_state"]["nn_input"]
    assert "base_model.layer1.0.conv1.layer.weight" in raw["model_state"]["nn_backbone"]
    assert isinstance(raw["data_state"]["best_score unbalanced"], np.float64)
    assert raw["optimizer_state_dict"]["state"]  # momentum buffers: a real optimizer state


def test_authors_checkpoint_gives_identical_logits(authors_checkpoint, capsys):
    reference, path = authors_checkpoint
    model = create_tsam("resnet18", num_classes=5, audio=True, shift_pad="keep", pretrained=path, **SETTINGS).eval()
    rep = model.load_report
    n_backbone = len(reference.nn_backbone.state_dict())
    assert rep.layout == AUTHORS_LAYOUT and rep.data_state == {"epoch": 51, "best_score unbalanced": 0.734}
    assert type(rep.data_state["best_score unbalanced"]) is float
    assert rep.loaded == n_backbone + 2 and not rep.missing and not rep.unexpected and not rep.skipped_classifier
    assert "the authors' checkpoint layout" in capsys.readouterr().out
    torch.manual_seed(1)
    video, audio = torch.randn(3, 6, 3, 32, 32), torch.randn(3, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(video, audio), reference(video, audio))
        # the border matters: the same weights with zero borders give other logits, and a warning says so
        with pytest.warns(UserWarning, match="shift_pad='keep'"):
            zero = create_tsam("resnet18", num_classes=5, audio=True, pretrained=path, **SETTINGS).eval()
        assert not torch.allclose(zero(video, audio), reference(video, audio), atol=1e-4)


def test_other_classifier_loads_the_backbone_and_skips_the_head(authors_checkpoint):
    reference, path = authors_checkpoint
    model = create_tsam("resnet18", num_classes=7, audio=True, shift_pad="keep", pretrained=path, **SETTINGS).eval()
    rep = model.load_report
    assert rep.loaded == len(reference.nn_backbone.state_dict())
    assert not rep.missing and not rep.unexpected
    assert [s.split()[0] for s in rep.skipped_classifier] == ["fc.weight", "fc.bias"]
    assert "classifier skipped" in str(rep) and "(5, 512)->(7, 512)" in str(rep)
    video, audio = torch.randn(2, 6, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        expected = reference.nn_backbone(reference.nn_input(video, audio)).view(2, 7, -1)
        torch.testing.assert_close(model.features(video, audio), expected)


def test_whole_model_state_dict_is_recognised_too(authors_checkpoint, tmp_path):
    reference, _ = authors_checkpoint
    torch.save(reference.state_dict(), tmp_path / "vcm.pth")
    sd, rep = read_checkpoint(tmp_path / "vcm.pth")
    assert rep.layout == AUTHORS_LAYOUT and "layer1.0.conv1.weight" in sd and "fc.weight" in sd


class Stranger:
    """An arbitrary object: the numpy scalars allowed for data_state open no door to it."""


def test_only_numpy_scalars_are_allowed(tmp_path):
    torch.save({"data_state": {"epoch": 1, "who": Stranger()}, "model_state": {"nn_backbone": {}, "last_fc": {}},
                "optimizer_state_dict": {}}, tmp_path / "pickled.tar")
    with pytest.raises(ValueError, match="weights-only"):
        read_checkpoint(tmp_path / "pickled.tar")


def test_every_resnet50_key_of_the_authors_maps_onto_tsamlib():
    # their resnet50 backbone (timm or torchvision names, fc an identity, shifts in blocks 0, 2 of each stage):
    # 318 tensors, every one of which has a place in tsamlib's backbone, and nothing of ours is left over
    with torch.device("meta"):
        theirs = BackbonePart("resnet50", 17, 16, 4, 4, 2, 0).state_dict()
        ours = create_tsam("resnet50", num_classes=400, n_frames=16, audio=True, shift_depth=4, f_div=4,
                           n_insert=2, shift_pad="keep").backbone.state_dict()
    assert len(theirs) == 318
    assert {authors_key(f"nn_backbone.{k}") for k in theirs} == {canonical_key(k) for k in ours}
