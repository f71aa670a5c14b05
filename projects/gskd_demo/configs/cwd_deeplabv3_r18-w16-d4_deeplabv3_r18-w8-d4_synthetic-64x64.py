# Demo: CWD on features (50) and logits (3), T 4, and per-pixel KD (1.0): the
# baseline of cwd-gskd without adversarial distillation, whose discriminator
# needs larger logits than the demo's 8x8.
# The project's distillation pieces (configs/gskd/_base_/methods) on the
# demo's student (first base, with data, schedule and the teacher's model);
# the projector maps the student's ASPP width (16) to the teacher's (32).
# projects/gskd_demo/demo.py sets `model.teacher_ckpt` to the trained teacher.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    '../../../configs/gskd/_base_/methods/cwd.py',
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
            cwd_projector=dict(
                type='ConvModuleConnector',
                in_channel=16,
                out_channel=32,
                norm_cfg=None,
                act_cfg=None))))
# Exact resume and atomic checkpoints, as in every recipe.
default_hooks = _base_.resume_hooks
