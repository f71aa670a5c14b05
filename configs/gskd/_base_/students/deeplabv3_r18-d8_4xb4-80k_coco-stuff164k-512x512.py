# Student missing from MMSeg's configs, composed as MMSeg composes it
# for Cityscapes (deeplabv3_r18-d8_4xb2-80k_cityscapes).
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-80k_coco-stuff164k-512x512.py'
model = dict(
    pretrained='open-mmlab://resnet18_v1c',
    backbone=dict(depth=18),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64))
