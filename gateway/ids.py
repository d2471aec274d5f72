"""The grammar of every id that comes from outside, defined once: what a request may
name (session, transaction, stream, viewer) and what may go into a provider's URL.

Each is an allow-list. None lets a value be only dots, so none can be a `.` or `..`
path segment: an id put into a provider's URL can never climb out of the path it was
put in.
"""

from __future__ import annotations

import re

# Ours: 128 random bits, URL-safe (model.new_session_id), with room for older forms.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Ours (the simulator's, Midtrans' order_id) or a provider's (Xendit's qr_..., Tripay's
# reference, otomatis.vip's trx_id): never starting with a dot.
TRX_ID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9_.:-]{0,63}")
# The catalog's, chosen by the operator: lower case, as they appear in URLs.
STREAM_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A viewer: ours (v_...) or a host platform's `sub`.
USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
# A program's name for one of its devices (check-access's deviceId).
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
