_base_ = [
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    './_base_/teachers/segformer_mit-b4_cityscapes-1024x1024.py',
    './_base_/methods/dist.py',
    './_base_/schedules/dist_cityscapes-40k.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=_base_.distiller)

# The authors' DIST (+ GSKD) schedule on Cityscapes: 40k iterations with
# 16 images per step (4 GPUs x 4).
train_dataloader = dict(batch_size=4)
train_cfg = dict(max_iters=40000)
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=40000,
        by_epoch=False)
]
default_hooks = _base_.resume_hooks

# The training protocol of this recipe family on this dataset
# (./_base_/schedules/; configs/gskd/README.md, "Fidelity").
train_dataloader = dict(batch_size=_base_.protocol_batch_size)
train_cfg = dict(max_iters=_base_.protocol_max_iters)
optim_wrapper = _base_.protocol_optim_wrapper
param_scheduler = _base_.protocol_param_scheduler
