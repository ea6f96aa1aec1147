"""A two-node Ray cluster simulated on this machine (Ray's own `ray.cluster_utils.Cluster`).

Each node offers one CPU and each ingress replica reserves 0.6, so Ray must put one ingress
replica on each node; the application still serves a stream through the head node's proxy.
"""

from __future__ import annotations

import asyncio
import json
import wave

import numpy as np
import pytest

from ray_harness import deploy, native


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, logging_level="WARNING", log_to_driver=False)
    nodes.wait_for_nodes()
    try:
        yield nodes
    finally:
        serve.shutdown()
        ray.shutdown()
        nodes.shutdown()


def test_replicas_spread_over_two_nodes_and_serve(cluster, tiny_model_dir, tmp_path, speech):
    import ray

    app = deploy(tiny_model_dir, tmp_path, ingress_replicas=2, scorer_replicas=1, cpus_per_ingress=0.6,
                 cpus_per_scorer=0.3)  # fmt: skip
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(alive) == 2
    health = app.health()
    assert health["status"] == "ok"
    assert {r["node"] for r in health["ingress_replicas"].values()} == alive  # one ingress replica per node
    assert health["scorer"]["node"] in alive
    pcm = (np.clip(speech[0], -1, 1) * 32767).astype(np.int16)
    messages = asyncio.run(native(app, pcm, "two-nodes"))
    assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
    assert any(m["type"] == "segment" for m in messages)
    assert json.loads((app.recordings / "two-nodes" / "session.json").read_text())["status"] == "complete"
    with wave.open(str(app.recordings / "two-nodes" / "audio.wav")) as w:
        assert w.getnframes() == len(pcm)
