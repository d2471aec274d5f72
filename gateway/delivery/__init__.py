"""`GATEWAY_DELIVERY=keys`: media anyone may carry, keys only viewers with access get.

The pure core, with no HTTP and no store: which key each segment is encrypted with and
the keys themselves (keys.py), the encryption (crypto.py), the public URL grammar under
`/media/` and `/keys/` (urls.py), and playlists rewritten to name both (playlists.py).
The service's handlers fetch from the origin, call these, and answer.
"""
