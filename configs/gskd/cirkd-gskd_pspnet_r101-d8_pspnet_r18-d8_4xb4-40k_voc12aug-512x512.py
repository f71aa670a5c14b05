_base_ = [
    './_base_/students/pspnet_r18-d8_4xb4-40k_voc12aug-512x512.py',
    './_base_/teachers/pspnet_r101-d8_voc12aug-512x512.py',
    './_base_/methods/cirkd_gskd.py',
    './_base_/schedules/cirkd_voc12aug-40k.py',
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
        # The memory of VOC's 21 classes, at the authors' (Cityscapes) sizes.
        distill_losses=dict(
            _base_.distiller.distill_losses,
            loss_memory_p2p=dict(
                _base_.distiller.distill_losses.loss_memory_p2p,
                num_classes=21,
                memory_size=20000),
            loss_memory_p2r=dict(
                _base_.distiller.distill_losses.loss_memory_p2r,
                num_classes=21,
                memory_size=2000)),
        connectors=dict(
            cirkd_projector=dict(
                type='GSKDProjector',
                in_channels=_base_.model.decode_head.channels,
                out_channels=_base_.teacher_channels),
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
