"""Tasks registered by the core: ``super_resolution`` and ``deblurring``.

A task turns recipe data settings into datasets, turns a loaded batch into a model ``(input, target)``
pair on the device (where batched degradations run), and scores a validation output.
"""
