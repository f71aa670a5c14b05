# Demo DIST (weight 1.0, tau 1) trained on the augmented pipeline (resize
# 0.5-2.0, crop, flip, photometric distortion:
# `_base_/synthetic_scenes_aug.py`) instead of the demo's flip only; the
# teacher sees the same augmented crops as the student.
_base_ = [
    './dist_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py',
    './_base_/synthetic_scenes_aug.py'
]
train_pipeline = _base_.aug_train_pipeline
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
