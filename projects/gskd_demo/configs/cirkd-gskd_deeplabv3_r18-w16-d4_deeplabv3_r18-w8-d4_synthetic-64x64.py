# Demo: CIRKD (memory terms 0.01 each) + GSKD (5.0, N = 8, S = -1, T = 4):
# the GSKD authors' recipe.
# The project's distillation pieces (configs/gskd/_base_/methods) on the
# demo's student (first base, with data, schedule and the teacher's model).
# The memory is sized for the demo: 7 classes, the teacher's 32 channels,
# 1000 pixels and 100 regions per class (filled within a few dozen steps
# of 8 images), 512 and 64 keys contrasted per step over all classes; the
# projectors map the student's ASPP width (16) to the teacher's (32).
# projects/gskd_demo/demo.py sets `model.teacher_ckpt` to the trained teacher.
_base_ = [
    './deeplabv3_r18-w8-d4_synthetic-64x64.py',
    '../../../configs/gskd/_base_/methods/cirkd_gskd.py',
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
                num_classes=7,
                channels=32,
                memory_size=1000,
                contrast_size=512),
            loss_memory_p2r=dict(
                _base_.distiller.distill_losses.loss_memory_p2r,
                num_classes=7,
                channels=32,
                memory_size=100,
                contrast_size=64)),
        connectors=dict(
            cirkd_projector=dict(
                type='GSKDProjector', in_channels=16, out_channels=32),
            gskd_projector=dict(
                type='GSKDProjector', in_channels=16, out_channels=32))))
