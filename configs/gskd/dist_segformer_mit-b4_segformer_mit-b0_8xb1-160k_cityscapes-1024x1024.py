_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    './_base_/teachers/segformer_mit-b4_cityscapes-1024x1024.py',
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
default_hooks = _base_.resume_hooks
