# VOC 2012 + aug: MMSeg's 40k-iteration schedule, 16 images per step (4 GPUs
# x 4); the authors published none.
_base_ = './cirkd.py'
protocol_batch_size = 4
protocol_max_iters = 40000
protocol_param_scheduler = [
    dict(_base_.protocol_poly, end=protocol_max_iters)
]
