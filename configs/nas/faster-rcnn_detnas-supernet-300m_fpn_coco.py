# DetNAS search on COCO 2017 with Faster R-CNN + FPN (Chen et al., arXiv 1903.10979): the supernet of the 300M
# channel/repeat layout (four block choices per unit), trained with a uniformly sampled path per iteration, then the
# evolutionary search scored on training images held out of supernet training.
#
#   python tools/nas/split_coco.py data/coco/annotations/instances_train2017.json --num-val 5000
#   bash tools/dist_train.sh configs/nas/faster-rcnn_detnas-supernet-300m_fpn_coco.py 8     # 8 GPUs, SyncBN
#   python tools/nas/search.py configs/nas/faster-rcnn_detnas-supernet-300m_fpn_coco.py \
#       work_dirs/faster-rcnn_detnas-supernet-300m_fpn_coco/epoch_12.pth
#   bash tools/dist_train.sh work_dirs/nas_search/faster-rcnn_detnas-supernet-300m_fpn_coco/best_config.py 8
#
# The DetNAS recipe trains the supernet with synchronized BN across all GPUs: every BN of the backbone is SyncBN
# with trainable statistics here, and sync_bn='torch' converts the other BN layers of the detector too in a
# distributed launch (on a single process mmengine reverts SyncBN to BN; the search always runs with plain BN and
# recomputes the statistics of each candidate). DetNAS also pre-trains the supernet on ImageNet with path sampling;
# no such checkpoint is provided here: point model.backbone.init_cfg at one (its keys are this supernet's) or train
# from scratch with a longer schedule.
_base_ = '../detnas/faster-rcnn_detnas-coco-fpn-300m_fpn_1x_coco.py'

data_root = 'data/coco/'
nas_train_ann = 'annotations/instances_train2017_nas-train.json'
nas_val_ann = 'annotations/instances_train2017_nas-val.json'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNASSupernet',
        space='300M',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: stages 1-4 (FPN P2-P5)
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 160, 320, 640]))
sync_bn = 'torch'
custom_hooks = [dict(type='UniformPathSamplerHook')]
find_unused_parameters = True  # the choices off the sampled path get no gradient in an iteration

train_dataloader = dict(dataset=dict(ann_file=nas_train_ann))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

_search_data = dict(
    type='CocoDataset',
    data_root=data_root,
    data_prefix=dict(img='train2017/'),
    test_mode=True,
    pipeline={{_base_.test_pipeline}})
nas_search = dict(
    # SPOS's evolution: population 50, top 10, 25 mutations (probability 0.1), 25 crossovers, 20 generations
    population_size=50,
    top_k=10,
    num_mutation=25,
    num_crossover=25,
    mutation_prob=0.1,
    generations=20,
    seed=0,
    # multiply-adds of the backbone with its ImageNet head at 224x224 (COCO-FPN-300M: 321.2M); SPOS's 330M budget
    flops_limit=330e6,
    flops_mode='classifier',
    flops_input=224,
    num_calib_batches=20,
    calib_dataloader=dict(batch_size=8, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=False),
                          dataset=dict(_search_data, ann_file=nas_train_ann)),
    val_dataloader=dict(batch_size=8, num_workers=2, sampler=dict(type='DefaultSampler', shuffle=False),
                        dataset=dict(_search_data, ann_file=nas_val_ann)),
    val_evaluator=dict(type='CocoMetric', ann_file=data_root + nas_val_ann, metric='bbox', format_only=False),
    metric='coco/bbox_mAP',
    references=['COCO-FPN-300M'],
    subnet_config='../detnas/faster-rcnn_detnas-coco-fpn-300m_fpn_1x_coco.py')
