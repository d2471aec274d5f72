"""The HLS gate, one object (`hls_gate.HlsGate`, behind the app key GATE) over its
parts: who may fetch (access.py), what may be fetched (paths.py), and where it comes
from (origins.py, with cache.py in front of HTTP upstreams)."""
