# Cityscapes: the authors' 80k iterations with 8 images per step (4 GPUs x
# 2).
_base_ = './cwd.py'
protocol_batch_size = 2
protocol_max_iters = 80000
protocol_param_scheduler = dict(
    _delete_=True,
    architecture=[dict(_base_.protocol_poly, end=protocol_max_iters)],
    discriminator=[])
