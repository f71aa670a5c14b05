# The demo student without distillation: a narrow DeepLabV3-R18 (base width
# 8) trained on Synthetic Scenes. Every distillation recipe of the demo
# inherits this student and its schedule.
_base_ = [
    './_base_/models/deeplabv3_r18-d4_demo.py', './_base_/synthetic_scenes.py',
    './_base_/schedule_demo.py', './_base_/default_runtime.py'
]
# The students' schedule, the same for every method: the demo's SGD with
# the gradient's global norm clipped at 30 and a linear warm-up over the
# first 10 % of the iterations. Without them some seeds collapsed to the
# majority class: at initialisation the logits are tiny (conv_seg's std
# 0.01) and nearly equal across classes at some pixels, where DIST's
# per-pixel Pearson correlation has a huge gradient. The clip binds only on
# such outliers; chosen on the base recipes only (no KD, DIST, CWD,
# CIRKD), never on a GSKD recipe (projects/gskd_demo/README.md, "The
# students' schedule").
optim_wrapper = dict(
    clip_grad=dict(_delete_=True, max_norm=30.0, norm_type=2))
warmup_iters = 100  # 10 % of the schedule's max_iters
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=warmup_iters,
        end=_base_.max_iters,
        by_epoch=False)
]
