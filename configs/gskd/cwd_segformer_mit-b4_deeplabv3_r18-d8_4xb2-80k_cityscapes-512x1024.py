_base_ = [
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    './_base_/teachers/segformer_mit-b4_cityscapes-1024x1024.py',
    './_base_/methods/cwd.py',
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
                in_channel=_base_.model.decode_head.channels,
                out_channel=_base_.teacher_channels,
                norm_cfg=None,
                act_cfg=None))))
