"""The code that runs models: loading them (the `ModelLoaderRegistry`, its loaders, the model cache), and util.

Nothing here imports torch, diffusers or transformers at module level: the server imports these modules when it
builds its services, and a server that only ever runs core nodes must not pay seconds and hundreds of MB for
them. The heavy imports live inside the functions that load, measure or move models.
"""
