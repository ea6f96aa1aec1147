"""emostream on Ray Serve: the live server as replicated deployments (optional extra `emostream[ray]`).

The Scorer deployment owns the model and batches every ingress replica's model jobs; Ingress
replicas run the unchanged Starlette app, sessions and recordings; the SessionHub makes live
sessions and monitor feeds the same on every replica. Only `topology` loads without Ray.
"""
