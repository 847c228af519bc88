"""A local stand-in for the weight publishers (tests only): an HTTP server on 127.0.0.1 serving generated checkpoints
under the publishers' URL paths, with switchable failures, and the files themselves in each publisher's layout."""
from __future__ import annotations

import collections
import hashlib
import http.server
import io
import socket
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import torch

from official_refs import randomize_

#: behaviours of a path: '404', '500', 'truncate' (half the body, then the connection closes), 'slow' (a delay
#: between chunks, so that concurrent clients overlap)
BEHAVIOURS = ('404', '500', 'truncate', 'slow')


class WeightsServer:
    """``files``: URL path -> bytes; ``behaviour``: URL path -> one of :data:`BEHAVIOURS`; ``hits``: GETs per path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.behaviour: dict[str, str] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.urlsplit(self.path).path
                owner.hits[path] += 1
                mode = owner.behaviour.get(path)
                if path not in owner.files or mode == '404':
                    self.send_error(404, 'Not Found')
                    return
                if mode == '500':
                    self.send_error(500, 'Internal Server Error')
                    return
                body = owner.files[path]
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                if mode == 'truncate':
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                step = 1 << 16
                for start in range(0, len(body), step):
                    self.wfile.write(body[start:start + step])
                    if mode == 'slow':
                        time.sleep(0.05)

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a machine without network: the connection is refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}'


def torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_path(url: str) -> str:
    return urllib.parse.urlsplit(url).path


def publisher_files() -> Iterator[tuple[str, bytes]]:
    """``(entry name, file bytes)`` for the downloadable entries the tests serve, each in its publisher's layout:
    torchvision's plain state dict (with ``fc``), mmpretrain's ``{'meta', 'state_dict'}`` (``backbone.*`` and
    ``head.*``), nanodet's Lightning checkpoint (``model.*`` and the averaged ``avg_model.*``), PaddleDetection's
    ``.pdparams`` pickle of numpy arrays."""
    from official_refs.mmpretrain_v1 import MMPretrainShuffleNetV1
    from official_refs.mmpretrain_v2 import MMPretrainShuffleNetV2
    from official_refs.nanodet_plus import NanoDetPlus
    from official_refs.paddle_picodet import paddle_bytes, paddle_state_dict, picodet, randomize_paddle_
    from official_refs.torchvision_v2 import TorchvisionShuffleNetV2

    for width, name in ((0.5, 'x0_5'), (1.0, 'x1_0')):
        yield f'torchvision/shufflenet_v2_{name}', torch_bytes(
            randomize_(TorchvisionShuffleNetV2(width, num_classes=1000), seed=1).state_dict())
    meta = {'mmcls_version': '0.1.0', 'CLASSES': None}
    yield 'mmpretrain/shufflenet_v1_g3_x1_0', torch_bytes(
        {'meta': meta, 'state_dict': randomize_(MMPretrainShuffleNetV1(3, 1.0), seed=2).state_dict()})
    yield 'mmpretrain/shufflenet_v2_x1_0', torch_bytes(
        {'meta': meta, 'state_dict': randomize_(MMPretrainShuffleNetV2(1.0), seed=3).state_dict()})
    ref = randomize_(NanoDetPlus('nanodet-plus-m_416'), seed=4)
    state = {f'model.{k}': v + 1 for k, v in ref.state_dict().items() if v.is_floating_point()}
    state.update({f'avg_model.{k}': v for k, v in ref.state_dict().items()})
    yield 'nanodet/nanodet-plus-m_416', torch_bytes({'epoch': 299, 'global_step': 366_000, 'state_dict': state})
    yield 'paddle/picodet_s_320_coco', paddle_bytes(paddle_state_dict(randomize_paddle_(picodet('S'), seed=5)))


def write_table(path: Path, hashes: dict[str, str]) -> Path:
    """The ``SHUFFLENET_DET_WEIGHTS_TABLE`` file giving the served files' hashes."""
    import json
    path.write_text(json.dumps({name: {'sha256': h} for name, h in hashes.items()}), encoding='utf-8')
    return path
