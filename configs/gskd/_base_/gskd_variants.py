# Our variants of GSKD, beside the authors' (declared differences,
# configs/gskd/README.md; their options: docs/en/advanced_guides/
# gskd_options.md): the one place each is defined, for the method bases
# that use them and for the CPU demo's study (projects/gskd_demo).
#
# Each descriptor a distribution (GSKD-desc), or each descriptor row one
# (GSKD-row, GSKD-row-t1), the self-similarity diagonal left out. The
# weights are set from a target, not tuned on results: GSKD's gradient on
# the student about as large as the task cross-entropy's at the start of
# training on the CPU demo (tools/analysis_tools/loss_gradients.py).
gskd_desc = dict(
    normalize='descriptor', exclude_diagonal=True, tau=1.0, loss_weight=4.0)
gskd_row = dict(
    normalize='row', exclude_diagonal=True, tau=0.1, loss_weight=13.0)
# GSKD-row-t1, the shipped variant (dist-gskd-row-t1 recipes).
gskd_row_t1 = dict(
    normalize='row', exclude_diagonal=True, tau=1.0, loss_weight=6.0)
# Balanced GSKD: GradientShareBalancerHook moves GSKD's weight during
# training so that its gradient on the student stays at the task loss's
# (target share 1.0; docs/en/user_guides/balancer.md). The target was set
# before any balanced run, for every base alike: it is the share the fixed
# weight of GSKD-row-t1 was chosen to give at the start of training, the
# pull that helped DIST on the demo; the balancer holds it as training
# changes both gradients instead of letting it drift. The weight starts at
# the recipe's and ramps up over the first 1000 iterations, while the
# student's predictions are still close to uniform.
gskd_balancer = dict(
    type='GradientShareBalancerHook',
    targets=dict(loss_gskd=1.0),
    warmup_iters=1000)
