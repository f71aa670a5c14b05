# The replay teacher cache (docs/en/user_guides/teacher_cache.md): each
# training image has `num_views` pre-drawn augmentations (the training
# pipeline's own draws under a seed per image and view), and the cache holds
# the teacher's records of exactly those views; training replays one of
# them per sample, so the targets are the online teacher's. A recipe
# switches to it as to ./dense.py, with this base instead; make the cache
# with `tools/cache_teacher.py CONFIG` (it reads the mode and K from here).
teacher_cache = dict(mode='replay', root=None, num_views=8, seed=0)
