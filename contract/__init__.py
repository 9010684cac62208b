"""The shared contract of curation, finetune and eval: what the three stages agree on.

A leaf package: it imports none of them. ``contract.models`` decides the compute dtype.
"""
