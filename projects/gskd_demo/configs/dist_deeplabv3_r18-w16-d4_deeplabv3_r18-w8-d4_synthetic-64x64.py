# Demo: DIST on the logits (weight 1.0, tau 1): the baseline of dist-gskd.
# The project's distillation pieces (configs/gskd/_base_/methods) on the
# demo's student (first base, with data, schedule and the teacher's model).
# projects/gskd_demo/demo.py sets `model.teacher_ckpt` to the trained teacher.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    '../../../configs/gskd/_base_/methods/dist.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=_base_.distiller)
# Exact resume and atomic checkpoints, as in every recipe.
default_hooks = _base_.resume_hooks
