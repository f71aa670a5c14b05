# DIST + GSKD-row-t1, balanced: dist_gskd_row_t1_aux.py with GSKD's weight
# moved during training to hold its share of the task gradient at 1.0
# (../gskd_variants.py, gskd_balancer: the target and its reason).
_base_ = ['./dist_gskd_row_t1_aux.py']
custom_hooks = [_base_.gskd_balancer]
