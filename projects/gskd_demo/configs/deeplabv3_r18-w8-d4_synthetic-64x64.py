# The demo student without distillation: a narrow DeepLabV3-R18 (base width
# 8) trained on Synthetic Scenes.
_base_ = [
    './_base_/models/deeplabv3_r18-d4_demo.py', './_base_/synthetic_scenes.py',
    './_base_/schedule_demo.py', './_base_/default_runtime.py'
]
