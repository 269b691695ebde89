"""The authors' released checkpoints (github.com/aav-antonov/TSAM): layout, key mapping, identical logits.

The authors' model and their saver are re-created from their module names alone in ``tests/authors_like.py``.
"""
import numpy as np
import pytest
import torch
from authors_like import SETTINGS, AuthorsModel, BackbonePart, save_like_authors, trained_like

from tsamlib.model.formats import AUTHORS_LAYOUT, authors_key, authors_safe_globals, read_checkpoint
from tsamlib.model.pretrained import canonical_key
from tsamlib.model.shift_reference import ShiftSpec
from tsamlib.model.tsam import create_tsam, tsam_kwargs


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = trained_like(AuthorsModel("resnet18", num_classes=5, **SETTINGS))
    path = tmp_path_factory.mktemp("authors") / "resnet18_tiny.ckpt.pth.tar"
    return save_like_authors(model, path), path


def test_checkpoint_holds_the_authors_layout(authors_checkpoint):
    _, path = authors_checkpoint
    with torch.serialization.safe_globals(authors_safe_globals()):  # numpy float64: nothing else needed
        raw = torch.load(path, weights_only=True)
    assert set(raw) == {"data_state", "model_state", "optimizer_state_dict"}
    assert set(raw["model_state"]) == {"nn_input", "nn_backbone", "last_fc"} and not raw["model_state"]["nn_input"]
    assert "base_model.layer1.0.conv1.layer.weight" in raw["model_state"]["nn_backbone"]
    assert isinstance(raw["data_state"]["best_score unbalanced"], np.float64)
    assert raw["optimizer_state_dict"]["state"]  # momentum buffers: a real optimizer state


def test_authors_checkpoint_gives_identical_logits(authors_checkpoint, capsys):
    reference, path = authors_checkpoint
    model = create_tsam("resnet18", num_classes=5, audio=True, pretrained=path,
                        **tsam_kwargs(dict(SETTINGS, shift_pad="keep"))).eval()
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
        # the border matters: zero borders are refused, naming both values; taken on purpose, other logits
        with pytest.raises(ValueError, match=r"shift_pad='keep' \(from the authors' code.*this model has "
                                             r"shift_pad='zero'.*pretrained_match='weights'"):
            create_tsam("resnet18", num_classes=5, audio=True, pretrained=path, **tsam_kwargs(SETTINGS))
        zero = create_tsam("resnet18", num_classes=5, audio=True, pretrained=path, pretrained_match="weights",
                           **tsam_kwargs(SETTINGS)).eval()
        assert "shift_pad='zero'" in str(zero.load_report)
        assert not torch.allclose(zero(video, audio), reference(video, audio), atol=1e-4)


def test_other_classifier_loads_the_backbone_and_skips_the_head(authors_checkpoint):
    reference, path = authors_checkpoint
    model = create_tsam("resnet18", num_classes=7, audio=True, pretrained=path,
                        **tsam_kwargs(dict(SETTINGS, shift_pad="keep"))).eval()
    rep = model.load_report
    assert rep.loaded == len(reference.nn_backbone.state_dict())
    assert not rep.missing and not rep.unexpected
    assert [s.split()[0] for s in rep.skipped_classifier] == ["fc.weight", "fc.bias"]
    assert "classifier replaced by a new one (the file's has 5 classes)" in str(rep)
    assert "(5, 512)->(7, 512)" in str(rep)
    assert rep.head == "replaced"
    video, audio = torch.randn(2, 6, 3, 32, 32), torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        expected = reference.nn_backbone(reference.nn_input(video, audio)).view(2, 7, -1)
        torch.testing.assert_close(model.features(video, audio), expected)


def test_whole_model_state_dict_is_recognised_too(authors_checkpoint, tmp_path):
    reference, _ = authors_checkpoint
    torch.save(reference.state_dict(), tmp_path / "vcm.pth")
    sd, info = read_checkpoint(tmp_path / "vcm.pth")
    assert info.format == AUTHORS_LAYOUT and "layer1.0.conv1.weight" in sd and "fc.weight" in sd


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
        ours = create_tsam("resnet50", num_classes=400, n_frames=16, audio=True,
                           shift=ShiftSpec(depth=4, f_div=4, pad="keep"), n_insert=2).backbone.state_dict()
    assert len(theirs) == 318
    assert {authors_key(f"nn_backbone.{k}") for k in theirs} == {canonical_key(k) for k in ours}
