# The augmented training pipeline of Synthetic Scenes: MMSeg's
# Cityscapes-style augmentation (configs/_base_/datasets/cityscapes.py)
# adapted to the demo's 64x64 images, for a config that inherits the demo's
# data (`_base_/synthetic_scenes.py`) and sets
#   train_pipeline = _base_.aug_train_pipeline
#   train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# (its key is its own: MMEngine refuses a key that two bases both define).
#
# - RandomResize: 0.5-2.0 times the 64x64 images, keeping the ratio.
# - RandomCrop to the demo's crop size (64, 64), no class over 75 % of the
#   crop where a redraw (up to 10) avoids it. Cityscapes crops half of
#   its images at scale 1; here the crop is the whole image at scale 1, so
#   below it (scales 0.5-1) the image is smaller than the crop and the
#   data preprocessor pads it to 64x64 (`seg_pad_val` 255, ignored).
# - RandomFlip: the demo's own flip (probability 0.5, horizontal or
#   vertical), so that this pipeline differs from the demo's only by the
#   resize, the crop and the colours.
# - PhotoMetricDistortion: MMSeg's brightness, contrast, saturation and hue
#   jitter.
aug_crop_size = (64, 64)
aug_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(64, 64),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=aug_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
