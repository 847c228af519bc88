# The DetNAS search on the synthetic mini COCO, on a CPU: supernet training and the evolutionary search.
#
#   python tools/misc/make_mini_coco.py
#   python tools/nas/split_coco.py data/mini_coco/annotations/instances_train2017.json --num-val 100
#   python tools/train.py configs/nas/retinanet_detnas-supernet-300m_fpn_mini-coco.py       # supernet, 304 iters
#   python tools/nas/search.py configs/nas/retinanet_detnas-supernet-300m_fpn_mini-coco.py \
#       work_dirs/retinanet_detnas-supernet-300m_fpn_mini-coco/epoch_8.pth
#   python tools/main_job.py --config work_dirs/nas_search/retinanet_detnas-supernet-300m_fpn_mini-coco/best_config.py \
#       --target-map 0      # retrain the found encoding on the schedule of the published one (see docs/nas.md)
#
# Supernet (DetNAS / SPOS): the 300M channel/repeat layout with all four block choices in every unit; every training
# iteration activates a uniformly sampled path (UniformPathSamplerHook) and updates only its weights. It trains on
# the training images minus the 100 held out by split_coco.py, which score the search candidates; the mini val2017
# set is left for the final comparison. Same detector, data pipeline and optimizer as the published-encoding config.
_base_ = './retinanet_detnas-coco-fpn-300m_fpn_mini-coco.py'

data_root = 'data/mini_coco/'
nas_train_ann = 'annotations/instances_train2017_nas-train.json'
nas_val_ann = 'annotations/instances_train2017_nas-val.json'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DetNASSupernet',
        space='300M',  # or '1.3G' (with neck in_channels [240, 480, 960])
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None))

custom_hooks = [dict(type='UniformPathSamplerHook')]
find_unused_parameters = True  # DDP: the choices off the sampled path get no gradient in an iteration

train_dataloader = dict(dataset=dict(ann_file=nas_train_ann))
# no validation while training the supernet (which path would it be?); the search scores paths instead
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

_search_data = dict(
    type='CocoDataset',
    data_root=data_root,
    metainfo={{_base_.metainfo}},
    data_prefix=dict(img='train2017/'),  # both parts are training images
    test_mode=True,
    pipeline={{_base_.test_pipeline}})
nas_search = dict(
    # the SPOS / DetNAS evolution, scaled down for a CPU: 4 generations of 8 candidates
    population_size=8,
    top_k=3,
    num_mutation=3,
    num_crossover=3,
    mutation_prob=0.1,
    generations=4,
    seed=0,
    # budget: multiply-adds of the backbone with its ImageNet head at 224x224 (the papers' count: the published
    # COCO-FPN-300M is 321.2M; paths of this space range from 295.8M to 358.8M); SPOS searches under 330M
    flops_limit=330e6,
    flops_mode='classifier',
    flops_input=224,
    # BN statistics recomputed for each candidate on 4 x 8 supernet-training images, then COCO mAP on the 100
    # held-out training images
    num_calib_batches=4,
    calib_dataloader=dict(batch_size=8, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                          dataset=dict(_search_data, ann_file=nas_train_ann)),
    val_dataloader=dict(batch_size=8, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
                        dataset=dict(_search_data, ann_file=nas_val_ann)),
    val_evaluator=dict(type='CocoMetric', ann_file=data_root + nas_val_ann, metric='bbox', format_only=False),
    metric='coco/bbox_mAP',
    references=['COCO-FPN-300M'],  # scored once with the same supernet weights, for comparison
    subnet_config='./retinanet_detnas-coco-fpn-300m_fpn_mini-coco.py')
