_base_ = [
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
    './_base_/teachers/segformer_mit-b4_cityscapes-1024x1024.py',
    './_base_/methods/cwd_gskd.py',
    './_base_/schedules/cwd.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='AdversarialEvalTeacherDistill',
    discriminator=_base_.discriminator,
    generator_loss=_base_.generator_loss,
    discriminator_loss=_base_.discriminator_loss,
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=dict(
        _base_.distiller,
        connectors=dict(
            gskd_projector=dict(
                type='GSKDProjector',
                in_channels=_base_.model.decode_head.channels,
                out_channels=_base_.teacher_channels),
            cwd_projector=dict(
                type='ConvModuleConnector',
                in_channel=_base_.model.decode_head.channels,
                out_channel=_base_.teacher_channels,
                norm_cfg=None,
                act_cfg=None))))

# SegFormer students keep MMSeg's own optimizer and schedule (AdamW, its
# warm-up and poly decay): the authors trained CNN students only, and SGD at
# lr 0.02 is not how MiT backbones are trained. The discriminator has the
# CWD protocol's own Adam (./_base_/schedules/cwd.py).
optim_wrapper = dict(
    _base_.protocol_optim_wrapper, architecture=_base_.optim_wrapper)
param_scheduler = dict(
    _delete_=True, architecture=_base_.param_scheduler, discriminator=[])
default_hooks = _base_.resume_hooks
