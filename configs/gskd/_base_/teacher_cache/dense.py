# The dense teacher cache (docs/en/user_guides/teacher_cache.md): the
# teacher's records of full training images at a few scales and flips,
# made once by tools/cache_teacher.py; each crop's targets are cut from
# them. A recipe switches to it with this base and three lines (see the
# recipes of configs/gskd/teacher_cache/):
#
#   _base_ = ['../<recipe>.py', '../_base_/teacher_cache/dense.py']
#   teacher_cache = dict(_base_.teacher_cache, root='data/teacher_cache/...')
#   model = dict(type='CachedTeacherDistill', teacher_cache=teacher_cache)
#   train_dataloader = dict(dataset=dict(
#       _delete_=True, type='TeacherViewDataset',
#       dataset=_base_.train_dataloader.dataset, cache=teacher_cache))
#
# (`CachedAdversarialTeacherDistill` for AdversarialEvalTeacherDistill
# recipes.) The cached algorithm neither builds nor loads the teacher; it
# checks that the cache was made from the recipe's teacher config,
# checkpoint, recorders and training files. `off_scale`: a crop at a
# scale the cache lacks (RandomResize draws any ratio of its range) is
# served from the nearest cached scale, with one warning ('nearest'), or
# refused ('error').
teacher_cache = dict(mode='dense', root=None, off_scale='nearest')
