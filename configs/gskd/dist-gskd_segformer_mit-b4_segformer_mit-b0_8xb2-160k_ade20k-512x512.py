_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
    './_base_/teachers/segformer_mit-b4_ade20k-512x512.py',
    './_base_/methods/dist_gskd.py',
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
                type='GSKDProjector',
                in_channels=_base_.model.decode_head.channels,
                out_channels=_base_.teacher_channels))))
default_hooks = _base_.resume_hooks
