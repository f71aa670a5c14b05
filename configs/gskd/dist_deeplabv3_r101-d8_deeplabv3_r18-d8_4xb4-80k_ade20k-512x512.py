_base_ = [
    './_base_/students/deeplabv3_r18-d8_4xb4-80k_ade20k-512x512.py',
    './_base_/teachers/deeplabv3_r101-d8_ade20k-512x512.py',
    './_base_/methods/dist_aux.py',
    './_base_/schedules/dist_ade20k-80k.py',
]
model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='EvalTeacherDistill',
    teacher_auxiliary=_base_.teacher_auxiliary,
    architecture=_base_.model,
    teacher=_base_.teacher,
    teacher_ckpt=_base_.teacher_ckpt,
    distiller=_base_.distiller)

# The training protocol of this recipe family on this dataset
# (./_base_/schedules/; configs/gskd/README.md, "Fidelity").
train_dataloader = dict(batch_size=_base_.protocol_batch_size)
train_cfg = dict(max_iters=_base_.protocol_max_iters)
optim_wrapper = _base_.protocol_optim_wrapper
param_scheduler = _base_.protocol_param_scheduler
default_hooks = _base_.resume_hooks
