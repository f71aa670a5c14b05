# The demo's two networks, DeepLabV3 (ASPPHead) on ResNetV1c-18 at output
# stride 4 (no stage strides: the stem's 4x only; later stages dilated),
# sized for 64x64 images on a CPU: plain BN, no ImageNet weights, ASPP
# dilations scaled to the 16x16 feature map. At stride 4 the feature map
# has 256 pixels, so GSKD's class-balanced sampling (8 per present class)
# draws a minority of them (about 2 % at Cityscapes scale).
#
# `model` is the student (base width 8, ASPP 16 channels, ~0.2M
# parameters); `teacher` is the same dict with the teacher's widths (base 16,
# ASPP 32 channels, ~0.9M parameters), as a distiller builds it. The
# teacher's training config trains `teacher`; distillation recipes load its
# checkpoint through `teacher_ckpt` (set by projects/gskd_demo/demo.py).
# Every model dict names its scope: a distiller (scope mmrazor) builds them.
num_classes = 7
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(
    _scope_='mmseg',
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(64, 64))
model = dict(
    _scope_='mmseg',
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type='ResNetV1c',
        depth=18,
        base_channels=8,
        stem_channels=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 2, 4, 8),
        strides=(1, 1, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True),
    decode_head=dict(
        type='ASPPHead',
        in_channels=64,
        in_index=3,
        channels=16,
        dilations=(1, 3, 6, 9),
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
# The same network, 2x wider.
teacher = dict(
    model,
    backbone=dict(model['backbone'], base_channels=16, stem_channels=16),
    decode_head=dict(model['decode_head'], in_channels=128, channels=32))
teacher_ckpt = None
