# Demo: CIRKD with CIRKD's own weights (logits KD 1.0, mini-batch 1.0,
# memory pixel-to-pixel and pixel-to-region 0.1 each): the baseline of
# cirkd-gskd.
# The project's distillation pieces (configs/gskd/_base_/methods) on the
# demo's student (first base, with data, schedule and the teacher's model).
# The memory is sized for the demo (./_base_/cirkd_memory_demo.py); the
# projectors map the student's ASPP width (16) to the teacher's (32).
# projects/gskd_demo/demo.py sets `model.teacher_ckpt` to the trained teacher.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    './_base_/cirkd_memory_demo.py',
    '../../../configs/gskd/_base_/methods/cirkd.py',
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
        distill_losses=dict(
            _base_.distiller.distill_losses,
            loss_memory_p2p=dict(
                _base_.distiller.distill_losses.loss_memory_p2p,
                **_base_.cirkd_memory_demo.loss_memory_p2p),
            loss_memory_p2r=dict(
                _base_.distiller.distill_losses.loss_memory_p2r,
                **_base_.cirkd_memory_demo.loss_memory_p2r)),
        connectors=dict(
            cirkd_projector=dict(
                type='GSKDProjector', in_channels=16, out_channels=32))))
# Exact resume and atomic checkpoints, as in every recipe.
default_hooks = _base_.resume_hooks
