# COCO-Stuff-164k: MMSeg's 80k-iteration schedule for the R18 student, 16
# images per step (4 GPUs x 4); the authors published none.
_base_ = './cwd.py'
protocol_batch_size = 4
protocol_max_iters = 80000
protocol_param_scheduler = dict(
    _delete_=True,
    architecture=[dict(_base_.protocol_poly, end=protocol_max_iters)],
    discriminator=[])
