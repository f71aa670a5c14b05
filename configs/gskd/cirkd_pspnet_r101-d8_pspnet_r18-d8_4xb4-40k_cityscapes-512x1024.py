_base_ = [
    'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    './_base_/teachers/pspnet_r101-d8_cityscapes-512x1024.py',
    './_base_/methods/cirkd.py',
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
        # The memory of Cityscapes' 19 classes, at the authors' sizes.
        distill_losses=dict(
            _base_.distiller.distill_losses,
            loss_memory_p2p=dict(
                _base_.distiller.distill_losses.loss_memory_p2p,
                num_classes=19,
                memory_size=20000),
            loss_memory_p2r=dict(
                _base_.distiller.distill_losses.loss_memory_p2r,
                num_classes=19,
                memory_size=2000)),
        connectors=dict(
            cirkd_projector=dict(
                type='GSKDProjector',
                in_channels=_base_.model.decode_head.channels,
                out_channels=_base_.teacher_channels))))

# The authors' CIRKD (+ GSKD) schedule on Cityscapes (train_cirkd_gskd.py):
# 40k iterations with 16 images per step (4 GPUs x 4), SGD lr 0.02,
# weight decay 1e-4, poly decay (power 0.9) to 0.
train_dataloader = dict(batch_size=4)
train_cfg = dict(max_iters=40000)
optim_wrapper = dict(optimizer=dict(lr=0.02, weight_decay=1e-4))
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=40000,
        by_epoch=False)
]
