# Demo: DIST (1.0) + GSKD (10.0, N = 8, S = -1, T = 1): the authors' weights.
# The project's distillation pieces (configs/gskd/_base_/methods) on the
# demo's student (first base, with data, schedule and the teacher's model);
# the projectors map the student's ASPP width (16) to the teacher's (32).
# projects/gskd_demo/demo.py sets `model.teacher_ckpt` to the trained teacher.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    '../../../configs/gskd/_base_/methods/dist_gskd.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=dict(
        _base_.distiller,
        connectors=dict(
            gskd_projector=dict(
                type='GSKDProjector', in_channels=16, out_channels=32))))
# Exact resume and atomic checkpoints, as in every recipe.
default_hooks = _base_.resume_hooks
