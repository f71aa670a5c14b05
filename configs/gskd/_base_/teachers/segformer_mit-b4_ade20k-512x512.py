# Teacher: MMSeg model-zoo weights of `mmseg::segformer/segformer_mit-b4_8xb2-160k_ade20k-512x512.py`
# (the `Weights` of that config in MMSeg's metafile). Its decode head works
# at stride 4.
teacher = dict(
    cfg_path='mmseg::segformer/segformer_mit-b4_8xb2-160k_ade20k-512x512.py',
    pretrained=False)
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/segformer/segformer_mit-b4_512x512_160k_ade20k/segformer_mit-b4_512x512_160k_ade20k_20210728_183055-7f509d7d.pth'  # noqa: E501
# Width of the features the distillers read (the input of the teacher's
# decode_head.conv_seg, i.e. its decode_head.channels): the projectors'
# out_channels.
teacher_channels = 256
