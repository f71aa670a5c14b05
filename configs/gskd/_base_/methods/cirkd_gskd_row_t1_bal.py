# CIRKD + GSKD-row-t1, balanced: cirkd_gskd.py with GSKD-row-t1
# (../gskd_variants.py, gskd_row_t1; T 1 instead of the authors' T 4)
# instead of the authors' GSKD, its weight moved during training to hold
# its share of the task gradient at 1.0 (gskd_balancer: the target and its
# reason).
_base_ = ['./cirkd_gskd.py', '../gskd_variants.py']
distiller = dict(distill_losses=dict(loss_gskd=_base_.gskd_row_t1))
custom_hooks = [_base_.gskd_balancer]
