"""`GATEWAY_DELIVERY=keys`: media anyone may carry, keys only viewers with access get.

The pure core, with no HTTP and no store: which key each segment is encrypted with and
the keys themselves (keys.py), the encryption (crypto.py), the public URL grammar under
`/media/` and `/keys/` (urls.py), and playlists rewritten to name both (playlists.py).
service.py puts the core to work in the service, over the gate's origins and caches and
the store's keys; the handlers (handlers/media.py) read requests and answer.
"""
