# The demo teacher: a wider DeepLabV3-R18 (base width 16) trained on
# Synthetic Scenes. The model is `teacher` of the models base, the one that
# the distillation recipes build. AdamW gets it much further than the
# students' SGD in the few iterations a CPU demo affords.
_base_ = [
    './_base_/models/deeplabv3_r18-d4_demo.py', './_base_/synthetic_scenes.py',
    './_base_/schedule_demo.py', './_base_/default_runtime.py'
]
model = dict(_base_.teacher, _delete_=True)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.002, weight_decay=0.01))
