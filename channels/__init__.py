"""Channels and Subscriptions (``messaging.knative.dev/v1``).

Not implemented yet: manifests of these kinds are refused with "kind ... is not supported yet".
"""
