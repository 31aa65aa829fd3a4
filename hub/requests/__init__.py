"""Federated query/retrieve requests: the hub routes opaque, sealed requests and answers.

The hub sees who asks (organization, site), whom (target organizations), when, the state of
each target and counts; the query keys and the answers are sealed end to end (`wire.query`).
"""
