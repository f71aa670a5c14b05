# DIST + GSKD-row-t1 for students with an auxiliary head: dist_gskd_aux.py
# with GSKD's row-wise variant instead of the authors' GSKD (a declared
# difference, configs/gskd/README.md): each descriptor row is a
# distribution over its S columns, the self-similarity diagonal is left
# out, T 1, weight 6. The weight gives GSKD a gradient about as large as
# the task loss's at the start of training (measured on the CPU demo; the
# authors' GSKD there: 3 %). In the demo's sweep it brought DIST's
# students closer to the teacher's structure and raised their mIoU by 0.78
# [0.07, 1.49] points (40 seeds; projects/gskd_demo/README.md, "The
# sweep").
_base_ = ['./dist_gskd_aux.py']
distiller = dict(
    distill_losses=dict(
        loss_gskd=dict(
            normalize='row', exclude_diagonal=True, tau=1.0,
            loss_weight=6.0)))
