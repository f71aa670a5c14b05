# Synthetic Scenes (projects/gskd_demo/gskd_demo/scenes.py, dataset.py): 64x64
# procedural scenes, 7 classes told apart by texture and context, generated
# on first use.
#
# `data_root=None` is the cache, `<$GSKD_MM_CACHE or ~/.cache/gskd_mm>/
# synthetic_scenes`; `generate_cfg` holds the keyword arguments of
# `generate_synthetic_scenes` (None: 300 train / 60 val images, seed 0) and
# must be the same for both splits. The type is given by its import path
# (the repository root on sys.path, as for MMSeg's projects), which imports
# the demo module without a `custom_imports` (which would clash with the one
# of the distillation pieces these configs are merged with).
dataset_type = 'projects.gskd_demo.gskd_demo.SyntheticScenesDataset'
data_root = None
generate_cfg = None
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        generate_cfg=generate_cfg,
        ann_file='splits/train.txt',
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        generate_cfg=generate_cfg,
        ann_file='splits/val.txt',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
