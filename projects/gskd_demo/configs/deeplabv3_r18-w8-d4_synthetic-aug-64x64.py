# The demo student without distillation, trained on the augmented pipeline
# (resize 0.5-2.0, crop, flip, photometric distortion:
# `_base_/synthetic_scenes_aug.py`) instead of the demo's flip only.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    './_base_/synthetic_scenes_aug.py'
]
train_pipeline = _base_.aug_train_pipeline
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
