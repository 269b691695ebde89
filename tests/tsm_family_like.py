"""Models of the TSM family re-created from their module names and their shift's definition (not their code), and
their savers: the ground truth the checkpoint tests compare tsamlib's logits with.

- :class:`TSMRepoModel`: the TSM repository's ``TSN`` (github:mit-han-lab/temporal-shift-module ``ops/models.py``):
  a *torchvision* ResNet as ``base_model``, the shift wrapper holding ``conv1`` as ``.net`` in every block
  (every 2nd when layer3 has 23 or more blocks), ``fc`` a dropout and ``new_fc`` the classifier applied per frame,
  then averaged; :func:`save_like_tsm` writes ``main.py``'s ``{epoch, arch, state_dict, optimizer, best_prec1}``
  from a DataParallel wrapper (``module.`` keys).
- :class:`MMRecognizer`: mmaction2's ``Recognizer2D`` with a ``ResNet``/``ResNetTSM`` backbone built of mmcv-style
  ``ConvModule``s (``conv``, ``bn``, ReLU) and a ``TSMHead`` / ``TSNHead`` (``fc_cls``); :func:`save_like_mmaction2`
  writes mmengine's ``{meta: {cfg: <config text>, ...}, state_dict, optimizer}``.
"""
import torch
import torchvision
from torch import nn

# ------------------------------------------------------------------------------------------- the TSM repository


def tsm_shift(x, n_segment, fold_div):
    """TSM's shift, from its definition: the first ``c // fold_div`` channels come from the next segment, the
    next as many from the previous one, zeros at the clip's border, the rest stay."""
    nt, c, h, w = x.shape
    x = x.view(nt // n_segment, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class Shifted(nn.Module):
    """The TSM family's shift wrapper: the wrapped layer is ``.net`` (TSM's and mmaction2's naming alike)."""

    def __init__(self, net, n_segment, fold_div):
        super().__init__()
        self.net, self.n_segment, self.fold_div = net, n_segment, fold_div

    def forward(self, x):
        return self.net(tsm_shift(x, self.n_segment, self.fold_div))


class TSMRepoModel(nn.Module):
    """TSM's ``TSN`` for RGB: ``base_model`` (torchvision ResNet), ``new_fc``; logits averaged over segments."""

    def __init__(self, num_class, num_segments, arch="resnet50", is_shift=True, shift_div=8, dropout=0.8):
        super().__init__()
        self.num_segments = num_segments
        self.base_model = getattr(torchvision.models, arch)(weights=None)
        if is_shift:
            n_round = 2 if len(self.base_model.layer3) >= 23 else 1
            for stage in (self.base_model.layer1, self.base_model.layer2, self.base_model.layer3,
                          self.base_model.layer4):
                for i, block in enumerate(stage):
                    if i % n_round == 0:
                        block.conv1 = Shifted(block.conv1, num_segments, shift_div)
        dim = self.base_model.fc.in_features
        if dropout == 0:
            self.base_model.fc, self.new_fc = nn.Linear(dim, num_class), None
        else:
            self.base_model.fc, self.new_fc = nn.Dropout(p=dropout), nn.Linear(dim, num_class)

    def forward(self, video):                              # (B, T, 3, H, W): TSM reads (B, T*3, H, W) as this
        out = self.base_model(video.reshape((-1,) + video.shape[-3:]))
        if self.new_fc is not None:
            out = self.new_fc(out)
        return out.view(-1, self.num_segments, out.shape[-1]).mean(dim=1)   # their avg consensus


def save_like_tsm(model, path, arch, epoch=50, best_prec1=71.2):
    """``main.py``'s ``save_checkpoint``: the DataParallel model's state dict, an SGD state with momentum."""
    wrapped = nn.DataParallel(model)
    optimizer = torch.optim.SGD(wrapped.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    for p in wrapped.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.save({"epoch": epoch, "arch": arch, "state_dict": wrapped.state_dict(), "optimizer": optimizer.state_dict(),
                "best_prec1": best_prec1}, path)
    return model.eval()


# ---------------------------------------------------------------------------------------------------- mmaction2
class ConvModule(nn.Module):
    """mmcv's ConvModule as a checkpoint names it: ``conv`` and ``bn`` (then a ReLU unless ``act`` is False)."""

    def __init__(self, cin, cout, k, stride=1, padding=0, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class MMBlock(nn.Module):
    """mmaction2's BasicBlock / Bottleneck, style 'pytorch' (the stride on the 3x3 conv)."""

    def __init__(self, cin, planes, stride, bottleneck):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1 = ConvModule(cin, planes, 1)
            self.conv2 = ConvModule(planes, planes, 3, stride, 1)
            self.conv3 = ConvModule(planes, cout, 1, act=False)
        else:
            self.conv1 = ConvModule(cin, planes, 3, stride, 1)
            self.conv2 = ConvModule(planes, planes, 3, 1, 1, act=False)
        self.bottleneck = bottleneck
        self.downsample = ConvModule(cin, cout, 1, stride, act=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if self.bottleneck:
            out = self.conv3(out)
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


_DEPTHS = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False), 50: ((3, 4, 6, 3), True), 101: ((3, 4, 23, 3), True)}


class MMResNet(nn.Module):
    """mmaction2's ResNet (TSN) or, with ``num_segments``, ResNetTSM (shift around each block's ``conv1.conv``)."""

    def __init__(self, depth, num_segments=None, shift_div=8):
        super().__init__()
        stages, bottleneck = _DEPTHS[depth]
        self.conv1 = ConvModule(3, 64, 7, 2, 3)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, exp = 64, 4 if bottleneck else 1
        for s, n in enumerate(stages):
            planes = 64 * 2 ** s
            blocks = [MMBlock(cin if i == 0 else planes * exp, planes, (1 if s == 0 else 2) if i == 0 else 1,
                              bottleneck) for i in range(n)]
            cin = planes * exp
            if num_segments:
                n_round = 2 if stages[2] >= 23 else 1
                for i, b in enumerate(blocks):
                    if i % n_round == 0:
                        b.conv1.conv = Shifted(b.conv1.conv, num_segments, shift_div)
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.out_channels = cin

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class MMHead(nn.Module):
    """TSMHead (fc per segment, then the average) or TSNHead (average, then fc): ``fc_cls``."""

    def __init__(self, num_classes, in_channels, num_segments, tsm=True, dropout=0.5):
        super().__init__()
        self.tsm, self.num_segments = tsm, num_segments
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.avg_pool(x).flatten(1)
        if self.tsm:
            return self.fc_cls(self.dropout(x)).view(-1, self.num_segments, self.fc_cls.out_features).mean(1)
        return self.fc_cls(self.dropout(x.view(-1, self.num_segments, x.shape[-1]).mean(1)))


class MMRecognizer(nn.Module):
    """Recognizer2D: ``backbone``, ``cls_head`` (and, in older checkpoints, ``data_preprocessor`` mean/std)."""

    def __init__(self, depth, num_classes, num_segments, tsm=True, shift_div=8, preprocessor_buffers=False):
        super().__init__()
        self.backbone = MMResNet(depth, num_segments if tsm else None, shift_div)
        self.cls_head = MMHead(num_classes, self.backbone.out_channels, num_segments, tsm)
        if preprocessor_buffers:
            self.data_preprocessor = nn.Module()
            self.data_preprocessor.register_buffer("mean", torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1))
            self.data_preprocessor.register_buffer("std", torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1))

    def forward(self, video):                              # (B, T, 3, H, W)
        return self.cls_head(self.backbone(video.reshape((-1,) + video.shape[-3:])))


def mmaction2_cfg_text(depth, num_classes, num_segments, tsm=True, shift_div=8, test_clips=None,
                       test_views="twice_sample=True), dict(type='DecordDecode'), "
                                  "dict(type='Resize', scale=(-1, 256)), dict(type='ThreeCrop', crop_size=256"):
    """A config as mmengine's ``pretty_text`` renders it (Python source; tsamlib reads literals only); ``test_views``:
    the test pipeline from SampleFrames' last keywords to the crop step's."""
    clips, channels = test_clips or num_segments, 512 if depth < 50 else 2048
    backbone = (f"dict(type='ResNetTSM', pretrained='torchvision://resnet{depth}', depth={depth}, norm_eval=False, "
                f"shift_div={shift_div}, num_segments={num_segments})" if tsm else
                f"dict(type='ResNet', pretrained='https://download.pytorch.org/models/resnet{depth}.pth', "
                f"depth={depth}, norm_eval=False)")
    head = (f"dict(type='TSMHead', num_classes={num_classes}, in_channels={channels}, spatial_type='avg', "
            f"consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.5, init_std=0.001, is_shift=True, "
            f"num_segments={num_segments}, average_clips='prob')" if tsm else
            f"dict(type='TSNHead', num_classes={num_classes}, in_channels={channels}, spatial_type='avg', "
            "consensus=dict(type='AvgConsensus', dim=1), dropout_ratio=0.4, init_std=0.01, average_clips='prob')")
    return "\n".join([
        "default_scope = 'mmaction'",
        f"model = dict(type='Recognizer2D', backbone={backbone}, cls_head={head}, "
        "data_preprocessor=dict(type='ActionDataPreprocessor', mean=[123.675, 116.28, 103.53], "
        "std=[58.395, 57.12, 57.375], format_shape='NCHW'), train_cfg=None, test_cfg=None)",
        "train_pipeline = [dict(type='DecordInit', io_backend='disk'), dict(type='SampleFrames', clip_len=1, "
        f"frame_interval=1, num_clips={num_segments}), dict(type='DecordDecode')]",
        "test_pipeline = [dict(type='DecordInit', io_backend='disk'), dict(type='SampleFrames', clip_len=1, "
        f"frame_interval=1, num_clips={clips}, test_mode=True, {test_views}), "
        "dict(type='FormatShape', input_format='NCHW'), dict(type='PackActionInputs')]",
        "work_dir = './work_dirs/tsm'",
    ])


def save_like_mmaction2(model, path, cfg_text, epoch=50, classes=None):
    """mmengine's ``save_checkpoint``: ``meta`` (cfg text, epoch, iter, versions), the state dict, the optimizer."""
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    meta = {"epoch": epoch, "iter": 1000 * epoch, "cfg": cfg_text, "seed": 0, "experiment_name": "tsm_test",
            "time": "20220831_120000", "mmengine_version": "0.10.3"}
    if classes is not None:
        meta["dataset_meta"] = {"classes": list(classes)}
    torch.save({"meta": meta, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    return model.eval()
