# DIST + GSKD-row-t1 for students with an auxiliary head: dist_gskd_aux.py
# with GSKD's row-wise variant (../gskd_variants.py, gskd_row_t1) instead of
# the authors' GSKD, a declared difference (configs/gskd/README.md). Its
# effect on the demo: projects/gskd_demo/README.md.
_base_ = ['./dist_gskd_aux.py', '../gskd_variants.py']
distiller = dict(distill_losses=dict(loss_gskd=_base_.gskd_row_t1))
