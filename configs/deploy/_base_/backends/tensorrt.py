# TensorRT engine options (fp32; see *_fp16 configs for half precision). The model input shapes are set per config.
backend_config = dict(type='tensorrt', common_config=dict(fp16_mode=False, max_workspace_size=1 << 30))
