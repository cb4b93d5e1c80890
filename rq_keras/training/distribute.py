"""The run's `tf.distribute` strategy: one device, mirrored over local devices
(a split CPU included), or multi-worker from `TF_CONFIG`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from rq_keras.config.configs import STRATEGIES

__all__ = ["in_multi_worker", "is_chief", "make_strategy", "strategy_name"]


def read_tf_config() -> dict[str, Any]:
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    if not isinstance(doc, dict) or "cluster" not in doc or "task" not in doc:
        raise ValueError("TF_CONFIG must have `cluster` and `task` entries")
    return doc


def split_cpu(count: int) -> list[str]:
    """Makes `count` logical CPU devices (before TF starts); their names."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        # Already started (or already split): fine if the split is the one asked for.
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ValueError(
                f"`cpu_devices` {count}: TensorFlow has already started with "
                f"{len(tf.config.list_logical_devices('CPU'))} CPU device(s) in this process; "
                "the CPU can only be split before the first TensorFlow op"
            ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def check_devices(devices: Sequence[str]) -> None:
    """Every named device exists here (a missing one would hang a mirrored run)."""
    import tensorflow as tf

    known = tf.config.list_logical_devices()

    def key(name):
        spec = tf.DeviceSpec.from_string(name)
        return (spec.device_type or "").upper(), spec.device_index or 0

    available = {key(d.name) for d in known}
    for device in devices:
        try:
            wanted = key(device)
        except ValueError:
            wanted = None
        if wanted is None or wanted not in available:
            names = ", ".join(d.name for d in known)
            raise ValueError(
                f"device {device!r} does not exist on this host (it has {names}); to mirror "
                "over several CPU devices, split the CPU with --cpu-devices N"
            )


def make_strategy(name: str = "auto", devices: Sequence[str] = (), cpu_devices: int | None = None):
    """The `tf.distribute` strategy of a run; create it before any other TF op.

    Args:
        name: `"auto"` (multi_worker when `TF_CONFIG` names more than one
            task, mirrored with several local GPUs, `devices` or
            `cpu_devices`, else one_device), `"mirrored"`, `"multi_worker"`
            (needs `TF_CONFIG`) or `"one_device"`.
        devices: device names for mirrored/one_device; each must exist.
        cpu_devices: split the host CPU into this many logical devices first
            (mirrored then runs over them when `devices` is empty).

    `one_device` is TF's default strategy (its device placement), or a
    MirroredStrategy over `devices[0]` when one is named: Keras'
    `BackupAndRestore` does not accept `OneDeviceStrategy`.

    Raises:
        ValueError: an unknown strategy, a device this host does not have, a
            CPU split after TensorFlow started, or a bad `TF_CONFIG`.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}")
    if cpu_devices is not None and cpu_devices < 1:
        raise ValueError(f"`cpu_devices` must be >= 1, got {cpu_devices}")
    tf_config = read_tf_config()
    tasks = sum(len(v) for v in tf_config.get("cluster", {}).values() if isinstance(v, list))
    split = split_cpu(cpu_devices) if cpu_devices else []
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        if tasks > 1:
            name = "multi_worker"
        elif len(gpus) > 1 or len(devices) > 1 or len(split) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "multi_worker":
        if not tf_config:
            raise ValueError(
                "strategy multi_worker needs TF_CONFIG (the cluster and this task) in the "
                "environment"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    check_devices(devices)
    if name == "mirrored":
        if not devices and len(split) > 1 and not gpus:
            devices = split
        return tf.distribute.MirroredStrategy(list(devices) or None)
    if devices:
        return tf.distribute.MirroredStrategy([devices[0]])
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """True where this process writes the run's outputs (always, off multi-worker)."""
    return bool(strategy.extended.should_checkpoint)


def in_multi_worker(strategy) -> bool:
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec()
    return sum(cluster.num_tasks(job) for job in cluster.jobs) > 1


def strategy_name(strategy) -> str:
    name = type(strategy).__name__
    return "the default strategy" if name.startswith("_Default") else name
