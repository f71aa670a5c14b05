# Teacher: MMSeg model-zoo weights of `mmseg::segformer/segformer_mit-b4_8xb1-160k_cityscapes-1024x1024.py`
# (the `Weights` of that config in MMSeg's metafile). Its decode head works
# at stride 4.
teacher = dict(
    cfg_path='mmseg::segformer/segformer_mit-b4_8xb1-160k_cityscapes-1024x1024.py',
    pretrained=False)
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b4_8x1_1024x1024_160k_cityscapes/segformer_mit-b4_8x1_1024x1024_160k_cityscapes_20211207_080709-07f6c333.pth'  # noqa: E501
# Width of the features the distillers read (the input of the teacher's
# decode_head.conv_seg, i.e. its decode_head.channels): the projectors'
# out_channels.
teacher_channels = 256
