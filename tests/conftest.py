"""Test configuration: no network, offline hubs, temp dirs for gradio, small thread counts."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("REGIONLAB_DEVICE", "cpu")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NetworkBlocked(RuntimeError):
    pass


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise NetworkBlocked(f"tests must not touch the network (connect to {address!r})")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_loopback(address):
        raise NetworkBlocked(f"tests must not touch the network (connect to {address!r})")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    yield


@pytest.fixture(scope="session", autouse=True)
def _gradio_tmp(tmp_path_factory):
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    import torch

    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def bundled_clip():
    """The bundled ShapesWorld CLIP (skips the test when its weights are not here)."""
    from regionlab.models import get_spec, load_clip

    ok, why = get_spec("shapes-clip", "clip").available()
    if not ok:
        pytest.skip(f"bundled CLIP not available: {why}")
    return load_clip("shapes-clip")
