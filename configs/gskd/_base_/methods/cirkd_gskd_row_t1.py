# CIRKD + GSKD-row-t1: cirkd_gskd.py with GSKD's row-wise variant instead
# of the authors' GSKD (a declared difference, configs/gskd/README.md):
# each descriptor row is a distribution over its S columns, the
# self-similarity diagonal is left out, T 1, weight 6. The weight gives
# GSKD a gradient about as large as the task loss's at the start of
# training (measured on the CPU demo; the authors' GSKD there: 2 %). It is
# the variant of the demo's sweep that moved the students' structure
# towards the teacher's without losing mIoU (projects/gskd_demo/README.md,
# "The sweep").
_base_ = ['./cirkd_gskd.py']
distiller = dict(
    distill_losses=dict(
        loss_gskd=dict(
            normalize='row', exclude_diagonal=True, tau=1.0,
            loss_weight=6.0)))
