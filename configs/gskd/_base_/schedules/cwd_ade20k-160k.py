# ADE20K: MMSeg's 160k-iteration schedule for this student, 16 images per
# step (4 GPUs x 4); the authors published none.
_base_ = './cwd.py'
protocol_batch_size = 4
protocol_max_iters = 160000
protocol_param_scheduler = dict(
    _delete_=True,
    architecture=[dict(_base_.protocol_poly, end=protocol_max_iters)],
    discriminator=[])
