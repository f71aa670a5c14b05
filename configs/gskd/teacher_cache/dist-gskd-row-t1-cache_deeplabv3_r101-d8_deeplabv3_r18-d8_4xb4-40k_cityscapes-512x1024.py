# The recipe below, its teacher served from a dense teacher cache
# (../_base_/teacher_cache/dense.py; docs/en/user_guides/teacher_cache.md):
#   ../dist-gskd-row-t1_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py  # noqa: E501
# Make the cache first: python tools/cache_teacher.py <this config>
_base_ = [
    '../dist-gskd-row-t1_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py',  # noqa: E501
    '../_base_/teacher_cache/dense.py',
]
teacher_cache = dict(
    _base_.teacher_cache,
    root='data/teacher_cache/{{fileBasenameNoExtension}}')
model = dict(type='CachedTeacherDistill', teacher_cache=teacher_cache)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='TeacherViewDataset',
        dataset=_base_.train_dataloader.dataset,
        cache=teacher_cache))
