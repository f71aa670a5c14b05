# DIST + GSKD for students with an auxiliary head (ResNet students):
# dist_gskd.py plus 0.4 x DIST on the auxiliary logits, the teacher's
# auxiliary head run for them (the authors' train_gskd.py).
_base_ = ['./dist_gskd.py']
distiller = _base_.auxiliary_distiller
teacher_auxiliary = True
