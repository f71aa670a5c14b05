_base_ = [
    './_base_/students/deeplabv3_r18-d8_4xb4-80k_coco-stuff164k-512x512.py',
    './_base_/teachers/deeplabv3_r101-d8_coco-stuff164k-512x512.py',
    './_base_/methods/dist.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=_base_.distiller)
