"""An authors-style TSAM re-created from its module names alone (not their code), and their checkpoint saver.

Used by the checkpoint tests of the model layer and the released-checkpoint tests of the evaluation layer:
``nn_input`` (no tensors), ``nn_backbone`` (a ResNet ``base_model`` whose ``fc`` is an identity, the shifted convs
held as ``.layer``, and a dropout), ``last_fc``; their saver stores ``{data_state, model_state: {part:
part.state_dict()}, optimizer_state_dict}`` with ``data_state = {"epoch": int, "best_score <ID>": numpy.float64}``.
"""
import numpy as np
import timm
import torch
from torch import nn

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
