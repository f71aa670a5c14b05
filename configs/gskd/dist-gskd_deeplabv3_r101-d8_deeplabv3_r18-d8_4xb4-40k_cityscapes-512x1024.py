_base_ = [
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    './_base_/teachers/deeplabv3_r101-d8_cityscapes-512x1024.py',
    './_base_/methods/dist_gskd_aux.py',
    './_base_/schedules/dist_cityscapes-40k.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    teacher_auxiliary=_base_.teacher_auxiliary,
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

# The training protocol of this recipe family on this dataset
# (./_base_/schedules/; configs/gskd/README.md, "Fidelity").
train_dataloader = dict(batch_size=_base_.protocol_batch_size)
train_cfg = dict(max_iters=_base_.protocol_max_iters)
optim_wrapper = _base_.protocol_optim_wrapper
param_scheduler = _base_.protocol_param_scheduler
default_hooks = _base_.resume_hooks
